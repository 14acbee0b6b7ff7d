//! The process-wide TLS crypto provider (ring) for HTTP clients built on rustls.

/// Installs ring as the default rustls provider unless one is installed already.
pub fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another thread installing one is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
