//! `wharf import`'s checkpoints (`ImportStore`): per source, idempotent, forgotten on
//! `--restart`.

use crate::support::*;

pub async fn import_checkpoints(store: Store) {
    let s = &store.imports;
    let fs = "filesystem:/srv/registry";
    let s3 = "s3:images/registry";
    assert!(s.imported_repositories(fs).await.unwrap().is_empty());
    s.mark_imported(fs, "lib/b", 1).await.unwrap();
    s.mark_imported(fs, "lib/a", 2).await.unwrap();
    // Again (a repository imported twice after an interruption): no change, no error.
    s.mark_imported(fs, "lib/a", 3).await.unwrap();
    s.mark_imported(s3, "lib/a", 4).await.unwrap();
    assert_eq!(
        s.imported_repositories(fs).await.unwrap(),
        vec!["lib/a".to_string(), "lib/b".to_string()]
    );
    assert_eq!(
        s.imported_repositories(s3).await.unwrap(),
        vec!["lib/a".to_string()]
    );
    assert_eq!(s.forget_imports(fs).await.unwrap(), 2);
    assert!(s.imported_repositories(fs).await.unwrap().is_empty());
    assert_eq!(
        s.imported_repositories(s3).await.unwrap(),
        vec!["lib/a".to_string()],
        "another source's checkpoints stay"
    );
    assert_eq!(s.forget_imports(fs).await.unwrap(), 0);
}
