//! The `torchfit` package's linked stock crates as one loadable library: their components are registered in
//! this image by linking them, and the root module lists every registration of the image.

use torchfit_plugin_criteria as _;
use torchfit_plugin_models as _;
use torchfit_plugin_readers as _;

torchfit_sdk::export_plugin! {
    name: "torchfit-testplugin-stock",
    components: [],
}
