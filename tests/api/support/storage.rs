//! Where a test app keeps its data, and its removal when the test is done.

use plinth::store::Location;

use super::{Backend, create_postgres_database, drop_postgres_database};

/// Where a test app keeps its data. A `Storage::fresh` owns what it made and removes it
/// when dropped; one built by hand on another's location (a second node) owns nothing.
pub struct Storage {
    pub location: Location,
    /// What is removed with this value (`None`: nothing).
    pub _dir: Option<Owned>,
}

/// Data made for one test, removed when dropped: a temporary SQLite directory, or a
/// database on the test cluster.
pub enum Owned {
    Dir(tempfile::TempDir),
    Database(String),
}

impl Drop for Owned {
    fn drop(&mut self) {
        let Owned::Database(name) = self else { return };
        let name = std::mem::take(name);
        // Drop runs inside the test's runtime, which cannot block on a future: a thread
        // with a runtime of its own drops the database, and the test waits for it.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(drop_postgres_database(&name));
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            panic!("could not drop the test database");
        }
    }
}

impl Storage {
    pub async fn fresh(backend: Backend) -> Storage {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                Storage {
                    location: Location::SqliteDir(dir.path().to_path_buf()),
                    _dir: Some(Owned::Dir(dir)),
                }
            }
            Backend::Postgres => {
                let (name, url) = create_postgres_database().await;
                Storage {
                    location: Location::Postgres(url),
                    _dir: Some(Owned::Database(name)),
                }
            }
        }
    }

    pub fn sqlite_dir(&self) -> Option<&std::path::Path> {
        match &self.location {
            Location::SqliteDir(d) => Some(d),
            Location::Postgres(_) => None,
        }
    }

    /// Arguments that point the CLI at this storage.
    pub fn cli_args(&self) -> Vec<String> {
        match &self.location {
            Location::SqliteDir(d) => vec!["--data-dir".into(), d.display().to_string()],
            Location::Postgres(url) => vec!["--database-url".into(), url.clone()],
        }
    }
}
