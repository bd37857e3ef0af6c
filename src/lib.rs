//! botgate: a multi-tenant chatbot channel gateway for NAVER WORKS bots.
//! See DESIGN.md for the product and README.md for running it.
#![forbid(unsafe_code)]

pub mod audit;
pub mod bootstrap;
pub mod channels;
pub mod cli;
pub mod commands;
pub mod config;
pub mod console;
pub mod demo;
pub mod domain;
pub mod emulator;
pub mod engine;
pub mod error;
pub mod ingest;
pub mod metrics;
pub mod naverworks;
pub mod outbound;
pub mod rotation;
pub mod routes;
pub mod secrets;
pub mod service;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod token_cache;
pub mod worker;
