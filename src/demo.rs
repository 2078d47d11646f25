//! The demo tenant `--demo` seeds: SIP accounts a newcomer can register.

/// A SIP account of the demo tenant. The password is hashed (HA1) by the
/// registrar at start and not kept.
#[derive(Debug, Clone)]
pub struct DemoAccount {
    pub username: String,
    pub password: String,
}

/// Accounts 1001, 1002, 1003 with passwords pass1001, pass1002, pass1003.
pub fn accounts() -> Vec<DemoAccount> {
    (1001..=1003)
        .map(|n| DemoAccount {
            username: n.to_string(),
            password: format!("pass{n}"),
        })
        .collect()
}
