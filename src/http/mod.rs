//! The HTTP face of the issuer (axum): routes and error mapping.
