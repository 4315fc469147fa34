//! `dve-tests`: cross-crate integration and system tests, one file per scenario under `tests/`.
//! The library part holds the scaffolding those scenarios share.
