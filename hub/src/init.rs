//! `internet-hub init`: the hub's secret keys (0600, versioned) and a starter `hub.toml`.

use std::path::Path;

use renkei_crypto::keys::{KeyVersion, PseudonymKey, write_secret_file};
use renkei_crypto::sign::SigningKey;

use crate::config::Listen;
use crate::error::{Error, Result};

/// Creates `keys/` and `hub.toml` in `dir`, pointing at the PKI folder `pki`.
pub fn init(dir: &Path, pki: &Path) -> Result<()> {
    init_with(dir, pki, &Listen::default())
}

/// As [`init`], with the given listen addresses.
pub fn init_with(dir: &Path, pki: &Path, listen: &Listen) -> Result<()> {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys)
        .map_err(|e| Error::config_from(format!("cannot create `{}`", keys.display()), e))?;
    let cfg = dir.join("hub.toml");
    if cfg.exists() {
        return Err(Error::config(format!(
            "`{}` exists; refusing to overwrite",
            cfg.display()
        )));
    }
    let err = |e: renkei_crypto::Error| Error::config_from("cannot write a new key", e);
    PseudonymKey::generate(KeyVersion::V1)
        .save(&keys.join("pseudonym.key"))
        .map_err(err)?;
    SigningKey::generate(KeyVersion::V1)
        .save(&keys.join("signing.key"))
        .map_err(err)?;
    let mut pepper = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut pepper);
    write_secret_file(&keys.join("receipt-pepper.key"), &pepper).map_err(err)?;
    let p = pki.display();
    let (lp, lo, la) = (&listen.participant, &listen.portal, &listen.admin);
    let text = format!(
        "# Renkei hub configuration. Paths are relative to this file.\n\
         database_url = \"sqlite://hub.db\"\n\
         log_format = \"text\"\n\n\
         [listen]\nparticipant = \"{lp}\"\nportal = \"{lo}\"\nadmin = \"{la}\"\n\n\
         [tls]\ncert = \"{p}/server.pem\"\nkey = \"{p}/server.key\"\nclient_ca = \"{p}/ca.pem\"\ncrls = [\"{p}/crl.pem\"]\n\n\
         [keys]\npseudonym = \"keys/pseudonym.key\"\nsigning = \"keys/signing.key\"\nreceipt_pepper = \"keys/receipt-pepper.key\"\n"
    );
    std::fs::write(&cfg, text)
        .map_err(|e| Error::config_from(format!("cannot write `{}`", cfg.display()), e))?;
    Ok(())
}
