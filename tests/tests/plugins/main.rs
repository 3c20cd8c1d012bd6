//! Plugins loaded at run time: a third party's callback runs, bad libraries are refused in one
//! line, panics never cross the boundary, every shipped plugin conforms, and a plugin built
//! against the first released ABI still loads.

mod abi_versions;
mod conformance;
mod examples;
mod loading;
mod sdk11;
mod template;
