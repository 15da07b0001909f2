// SPDX-License-Identifier: MPL-2.0
//! The socket layer: the upgrade (`dial`, with `tls`), the bot's frames as
//! read (`frames`), what goes to the bot (`outbox`), and how a connection
//! ends (`close`).

pub mod close;
pub mod dial;
pub mod frames;
pub mod outbox;
pub mod tls;
