//! The business operations, one place for each rule: the JSON routes parse a
//! request and answer with what these return, the console renders it, and
//! the command line calls the same functions. Nothing here knows HTTP
//! beyond the error catalogue (`ApiError`, whose field errors the console
//! shows next to its form fields).

pub mod activity;
pub mod auth;
pub mod callbacks;
pub mod checks;
pub mod connections;
pub mod engine;
pub mod events;
pub mod messages;
pub mod naverworks;
pub mod oauth;
pub mod slack;
pub mod status_hook;
pub mod tenants;
