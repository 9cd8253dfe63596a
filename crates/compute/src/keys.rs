//! Key pair material: OpenSSH ed25519 keys and self-signed X.509
//! certificates (Ed25519, RFC 8410) generated here, fingerprints of imported ones.
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use md5::{Digest, Md5};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn ssh_string(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn colon_hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn wrap(s: &str, width: usize) -> String {
    s.as_bytes()
        .chunks(width)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn new_signing_key() -> SigningKey {
    let seed: [u8; 32] = rand::random();
    SigningKey::from_bytes(&seed)
}

/// (public key line, private key PEM, fingerprint) of a new ssh key.
pub fn generate_ssh(comment: &str) -> (String, String, String) {
    let sk = new_signing_key();
    let pk = sk.verifying_key().to_bytes();
    let mut blob = Vec::new();
    ssh_string(&mut blob, b"ssh-ed25519");
    ssh_string(&mut blob, &pk);
    let public = format!("ssh-ed25519 {} {comment}", B64.encode(&blob));
    let check: u32 = rand::random();
    let mut private = Vec::new();
    private.extend_from_slice(&check.to_be_bytes());
    private.extend_from_slice(&check.to_be_bytes());
    ssh_string(&mut private, b"ssh-ed25519");
    ssh_string(&mut private, &pk);
    let mut both = sk.to_bytes().to_vec();
    both.extend_from_slice(&pk);
    ssh_string(&mut private, &both);
    ssh_string(&mut private, comment.as_bytes());
    let mut pad = 1u8;
    while private.len() % 8 != 0 {
        private.push(pad);
        pad += 1;
    }
    let mut file = b"openssh-key-v1\0".to_vec();
    ssh_string(&mut file, b"none");
    ssh_string(&mut file, b"none");
    ssh_string(&mut file, b"");
    file.extend_from_slice(&1u32.to_be_bytes());
    ssh_string(&mut file, &blob);
    ssh_string(&mut file, &private);
    let pem = format!(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
        wrap(&B64.encode(&file), 70)
    );
    (public, pem, colon_hex(&Md5::digest(&blob)))
}

/// The fingerprint of an imported OpenSSH public key, or None when it is not one.
pub fn ssh_fingerprint(public_key: &str) -> Option<String> {
    let mut it = public_key.split_whitespace();
    let kind = it.next()?;
    let blob = B64.decode(it.next()?).ok()?;
    if blob.len() < 4 {
        return None;
    }
    let n = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]) as usize;
    if blob.len() < 4 + n || &blob[4..4 + n] != kind.as_bytes() {
        return None;
    }
    Some(colon_hex(&Md5::digest(&blob)))
}

// --- a little DER

fn der(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = body.len();
    if n < 128 {
        out.push(n as u8);
    } else if n < 256 {
        out.extend_from_slice(&[0x81, n as u8]);
    } else {
        out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(body);
    out
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    der(0x30, &parts.concat())
}

const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

fn name(cn: &str) -> Vec<u8> {
    let atv = seq(&[vec![0x06, 0x03, 0x55, 0x04, 0x03], der(0x0c, cn.as_bytes())]);
    seq(&[der(0x31, &atv)])
}

fn utc_time(t: chrono::DateTime<chrono::Utc>) -> Vec<u8> {
    der(0x17, t.format("%y%m%d%H%M%SZ").to_string().as_bytes())
}

/// (certificate PEM, private key PEM, fingerprint) of a new self-signed cert.
pub fn generate_x509(cn: &str) -> (String, String, String) {
    let sk = new_signing_key();
    let pk = sk.verifying_key().to_bytes();
    let now = chrono::Utc::now();
    let serial: [u8; 8] = rand::random();
    let mut serial = serial.to_vec();
    serial[0] &= 0x7f;
    let alg = seq(&[ED25519_OID.to_vec()]);
    let mut bits = vec![0u8];
    bits.extend_from_slice(&pk);
    let spki = seq(&[alg.clone(), der(0x03, &bits)]);
    let tbs = seq(&[
        der(0xa0, &der(0x02, &[2])),
        der(0x02, &serial),
        alg.clone(),
        name(cn),
        seq(&[utc_time(now), utc_time(now + chrono::Duration::days(3650))]),
        name(cn),
        spki,
    ]);
    let sig = sk.sign(&tbs).to_bytes();
    let mut sbits = vec![0u8];
    sbits.extend_from_slice(&sig);
    let cert = seq(&[tbs, alg.clone(), der(0x03, &sbits)]);
    let cert_pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        wrap(&B64.encode(&cert), 64)
    );
    let pkcs8 = seq(&[der(0x02, &[0]), alg, der(0x04, &der(0x04, &sk.to_bytes()))]);
    let key_pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        wrap(&B64.encode(&pkcs8), 64)
    );
    let fp = colon_hex(&sha1(&cert));
    (cert_pem, key_pem, fp)
}

/// The fingerprint (SHA-1 of the DER) of an imported PEM certificate.
pub fn x509_fingerprint(pem: &str) -> Option<String> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    if !pem.contains("BEGIN CERTIFICATE") {
        return None;
    }
    let der = B64.decode(body.trim()).ok()?;
    Some(colon_hex(&sha1(&der)))
}

fn sha1(data: &[u8]) -> [u8; 20] {
    use sha1::Digest as _;
    sha1::Sha1::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sha1_known_answer() {
        assert_eq!(
            hex::encode(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }
    #[test]
    fn generated_keys_fingerprint_like_imports() {
        let (public, private, fp) = generate_ssh("k");
        assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        assert_eq!(ssh_fingerprint(&public).as_deref(), Some(fp.as_str()));
        let (cert, _, fp) = generate_x509("k");
        assert_eq!(x509_fingerprint(&cert).as_deref(), Some(fp.as_str()));
        assert!(ssh_fingerprint("ssh-rsa notbase64!").is_none());
    }
}
