//! `dve-fp-api`: the fast-path API.
