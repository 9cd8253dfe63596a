pub mod doc;
pub mod identity;
pub mod image;
pub mod saga;
