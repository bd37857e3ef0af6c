//! The NAVER WORKS channel: what botgate itself does against the real service
//! (see `shared/NAVERWORKS.md`). Nothing here knows about other channels.

pub mod content;
pub mod jwt;
pub mod signature;
pub mod token;
