//! The fare catalogue the bridge sells from, and its reload.
//!
//! [`Fares`] holds the catalogue in force: the built-in one, or the operator's file (`--fares`).
//! Every message reads it once ([`Fares::current`]); a reload ([`Fares::reload`], on SIGHUP)
//! applies a valid file and keeps the catalogue in force when the file is refused, saying why.
//! Passes already sold keep the terms they were sold on, whatever the catalogue becomes.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use tapgate_protocol::fares::FaresError;
use tapgate_protocol::Catalogue;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// The catalogue in force. Cheap to clone; clones share it.
#[derive(Debug, Clone)]
pub(crate) struct Fares {
    current: Arc<RwLock<Arc<Catalogue>>>,
    file: Option<PathBuf>,
}

impl Fares {
    /// The operator's file if one is named, else the built-in catalogue (with `two_hour_ms` as
    /// its two-hour pass). A file that cannot be read or is refused is an error naming its line
    /// and field.
    pub(crate) fn load(file: Option<PathBuf>, two_hour_ms: u64) -> Result<Self, FaresError> {
        let catalogue = match &file {
            Some(path) => Catalogue::load(path)?,
            None => Catalogue::builtin(two_hour_ms),
        };
        Ok(Self {
            current: Arc::new(RwLock::new(Arc::new(catalogue))),
            file,
        })
    }

    /// The catalogue in force now.
    pub(crate) fn current(&self) -> Arc<Catalogue> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the file again and puts it in force; on an error the catalogue in force stays.
    /// Without a file there is nothing to reload.
    pub(crate) fn reload(&self) -> Result<Arc<Catalogue>, FaresError> {
        let Some(path) = &self.file else {
            return Ok(self.current());
        };
        let fresh = Arc::new(Catalogue::load(path)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh.clone();
        Ok(fresh)
    }
}

/// Reloads `fares` on every SIGHUP until `shutdown`.
pub(crate) async fn reload_on_hangup(fares: Fares, shutdown: CancellationToken) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        error!("Cannot listen for SIGHUP; the fare catalogue cannot be reloaded");
        return;
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            got = hup.recv() => {
                if got.is_none() {
                    return;
                }
                // Reading the file blocks: off the runtime's threads, which decide taps.
                let reading = fares.clone();
                match tokio::task::spawn_blocking(move || reading.reload()).await {
                    Ok(Ok(c)) => info!(
                        version = %c.version,
                        products = c.products.len(),
                        "Fare catalogue reloaded"
                    ),
                    Ok(Err(e)) => error!(
                        error = %e,
                        "Fare catalogue refused; the one in force stays"
                    ),
                    Err(e) => error!(error = %e, "Fare catalogue reload failed"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapgate_protocol::ProductId;

    const FILE: &str = "currency = \"EUR\"\ntime_zone = \"UTC\"\n\n[[product]]\nid = \"DAY\"\n\
        name = \"Day\"\nprice = 700\nvalidity = \"service_day\"\n";

    #[test]
    fn reload_applies_a_good_file_and_keeps_the_old_on_a_bad_one() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("fares.toml");
        std::fs::write(&path, FILE).expect("write");
        let fares = Fares::load(Some(path.clone()), 1).expect("load");
        let day = ProductId::from_static("DAY");
        assert_eq!(
            fares.current().product(day).map(|p| p.terms.price),
            Some(700)
        );

        std::fs::write(&path, FILE.replace("700", "800")).expect("write");
        fares.reload().expect("reload");
        assert_eq!(
            fares.current().product(day).map(|p| p.terms.price),
            Some(800)
        );

        std::fs::write(&path, FILE.replace("800", "-1").replace("700", "-1")).expect("write");
        let e = fares.reload().expect_err("refused");
        assert_eq!(e.field, "product[1].price");
        assert_eq!(
            fares.current().product(day).map(|p| p.terms.price),
            Some(800),
            "the catalogue in force stays"
        );
    }

    #[test]
    fn without_a_file_the_builtin_catalogue() {
        let fares = Fares::load(None, 5_000).expect("builtin");
        let two = fares
            .current()
            .product(ProductId::TWO_HOUR)
            .map(|p| p.terms);
        assert_eq!(two.map(|t| t.duration_ms), Some(5_000));
        assert!(fares.reload().is_ok());
    }
}
