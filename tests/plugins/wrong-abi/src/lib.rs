//! A library exporting a root module named like torchfit's but laid out differently, as a plugin
//! built against an incompatible SDK would: the host must refuse it with a short message.
#![allow(non_camel_case_types, non_local_definitions)]
use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::RStr;
use abi_stable::{
    declare_root_module_statics, export_root_module, package_version_strings, prefix_type::PrefixTypeTrait, StableAbi,
};

#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = OtherRoot_Ref)))]
#[sabi(missing_field(panic))]
pub struct OtherRoot {
    pub abi_version: u64,
    #[sabi(last_prefix_field)]
    pub name: RStr<'static>,
}

impl RootModule for OtherRoot_Ref {
    declare_root_module_statics! {OtherRoot_Ref}
    const BASE_NAME: &'static str = "torchfit_plugin";
    const NAME: &'static str = "torchfit_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

#[export_root_module]
fn root() -> OtherRoot_Ref {
    OtherRoot { abi_version: 1, name: RStr::from_str("wrong-abi") }.leak_into_prefix()
}
