pub mod identity;
pub mod image;
