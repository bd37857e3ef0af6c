//! `botgate keys rotate`: re-encrypts every sealed value under the current
//! master key while older keys still open them. Safe beside running servers:
//! each value is replaced with a compare-and-swap, and servers whose keys come
//! from a file reload it when they meet a key id they do not know.

use crate::domain::now_millis;
use crate::secrets::vault::Vault;
use crate::store::Store;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// Values now sealed under the current key.
    pub reencrypted: u64,
    /// Values changed by someone else meanwhile (already under the current key).
    pub raced: u64,
    /// Values that could not be opened with any key in the ring.
    pub unreadable: u64,
}

/// Re-encrypts, in batches, everything not sealed under the current key.
pub async fn reencrypt_all(store: &Store, vault: &Vault) -> anyhow::Result<RotationReport> {
    let ring = vault.ring();
    let current = ring.current().id().to_owned();
    let mut report = RotationReport::default();
    let mut cursor: Option<(String, String)> = None;
    loop {
        let after = cursor.as_ref().map(|(o, f)| (o.as_str(), f.as_str()));
        let batch = store.secrets_not_under_key(&current, after, 200).await?;
        let Some(last) = batch.last() else { break };
        cursor = Some((last.owner_id.clone(), last.field.clone()));
        for record in &batch {
            let plain = match ring.open(&record.sealed, record.aad()) {
                Ok(plain) => plain,
                Err(e) => {
                    tracing::error!(owner = %record.owner_id, field = %record.field, error.message = %e, "cannot re-encrypt");
                    report.unreadable += 1;
                    continue;
                }
            };
            let sealed = ring.seal(&plain, record.aad());
            if store.replace_secret(record, &sealed, now_millis()).await? {
                report.reencrypted += 1;
            } else {
                report.raced += 1;
            }
        }
    }
    Ok(report)
}
