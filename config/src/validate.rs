//! Cross-reference validation (stub).
