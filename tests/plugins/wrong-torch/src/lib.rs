//! A plugin whose root module reports another libtorch: the host must refuse it.
use abi_stable::{export_root_module, prefix_type::PrefixTypeTrait, std_types::RStr};
use torchfit_sdk::ffi::{export, PluginRoot, PluginRoot_Ref, ABI_VERSION};

#[export_root_module]
fn root() -> PluginRoot_Ref {
    PluginRoot {
        abi_version: ABI_VERSION,
        torch_tag: RStr::from_str("tch 0.26.0, libtorch 2.13.0"),
        name: RStr::from_str("torchfit-testplugin-wrong-torch"),
        version: RStr::from_str(env!("CARGO_PKG_VERSION")),
        set_logger: export::set_logger,
        components: export::components,
        build: export::build,
    }
    .leak_into_prefix()
}
