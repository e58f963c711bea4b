//! Signal model.
