//! Integration tests: the real server over HTTP, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)] // tests state their expectations with unwrap

mod documented;
mod helpers;

mod inbound;
mod webdriver;

mod attachments;
mod bad_inputs;
mod connections;
mod console;
mod crash;
mod database_copy;
mod demo;
mod emulator;
mod keys;
mod layers;
mod lifecycle;
mod operations;
mod outbound;
mod quickstart;
mod quotas;
mod replicas;
mod secrets_at_rest;
mod send;
mod slack;
mod slack_installs;
mod tenants;
mod tokens;
mod user_accounts;
