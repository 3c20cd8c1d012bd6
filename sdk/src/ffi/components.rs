//! Criteria, models and dataset readers across the boundary, each with a plugin-side adapter
//! (`*Adapter`) and a host-side wrapper (`Dyn*`) that implements the SDK trait again.

use super::{guard_in, ErrorFfi, ErrorForm, NamedTensor, RawTensor};
use crate::{Criterion, DatasetReader, Error, Model, Result, Scorer};
use abi_stable::sabi_trait;
use abi_stable::std_types::{RBox, RResult, RSlice, RVec, Tuple2};
use tch::Tensor;

fn ok<T>(r: RResult<T, ErrorFfi>) -> Result<T> {
    r.into_result().map_err(Error::from)
}

/// [`Criterion`] as a stable-ABI trait object.
#[sabi_trait]
pub trait CriterionFfi: Send {
    /// [`Criterion::loss`]: inputs lent, the loss given.
    #[sabi(last_prefix_field)]
    fn loss(&self, y_pred: RawTensor, y: RawTensor) -> RResult<RawTensor, ErrorFfi>;
}

/// Plugin side of a criterion.
pub struct CriterionAdapter<C>(pub C, pub ErrorForm);

impl<C: Criterion> CriterionFfi for CriterionAdapter<C> {
    fn loss(&self, y_pred: RawTensor, y: RawTensor) -> RResult<RawTensor, ErrorFfi> {
        // SAFETY: both lent by DynCriterion::loss for this call.
        guard_in(self.1, "loss", || unsafe { self.0.loss(&y_pred.borrow(), &y.borrow()) }.map(RawTensor::give))
    }
}

/// Host side of a loaded criterion.
pub struct DynCriterion(pub CriterionFfi_TO<'static, RBox<()>>);

impl Criterion for DynCriterion {
    fn loss(&self, y_pred: &Tensor, y: &Tensor) -> Result<Tensor> {
        // SAFETY: CriterionAdapter::loss gives the loss.
        ok(self.0.loss(RawTensor::lend(y_pred), RawTensor::lend(y))).map(|t| unsafe { t.take() })
    }
}

/// [`Model`] as a stable-ABI trait object.
#[sabi_trait]
pub trait ModelFfi: Send {
    /// [`Model::forward`]: input lent, output given.
    fn forward(&self, x: RawTensor, train: bool) -> RResult<RawTensor, ErrorFfi>;
    /// [`Model::parameters`], given.
    fn parameters(&self) -> RVec<NamedTensor>;
    /// [`Model::state_dict`], given.
    fn state_dict(&self) -> RVec<NamedTensor>;
    /// [`Model::load_state_dict`], lent.
    #[sabi(last_prefix_field)]
    fn load_state_dict(&mut self, state: RVec<NamedTensor>) -> RResult<(), ErrorFfi>;
}

/// Plugin side of a model.
pub struct ModelAdapter<M>(pub M, pub ErrorForm);

impl<M: Model> ModelFfi for ModelAdapter<M> {
    fn forward(&self, x: RawTensor, train: bool) -> RResult<RawTensor, ErrorFfi> {
        // SAFETY: lent by DynModel::forward for this call.
        guard_in(self.1, "forward", || unsafe { self.0.forward(&x.borrow(), train) }.map(RawTensor::give))
    }
    fn parameters(&self) -> RVec<NamedTensor> {
        guard_in(self.1, "parameters", || Ok(NamedTensor::give_all(self.0.parameters())))
            .into_result()
            .unwrap_or_default()
    }
    fn state_dict(&self) -> RVec<NamedTensor> {
        guard_in(self.1, "state_dict", || Ok(NamedTensor::give_all(self.0.state_dict())))
            .into_result()
            .unwrap_or_default()
    }
    fn load_state_dict(&mut self, state: RVec<NamedTensor>) -> RResult<(), ErrorFfi> {
        // SAFETY: lent by DynModel::load_state_dict for this call.
        guard_in(self.1, "load_state_dict", || self.0.load_state_dict(&unsafe { NamedTensor::copy_lent(&state) }))
    }
}

/// A component shared by its adapter and the [`super::ext::RequestsAdapter`] that answers its
/// requests: a model (a plugin of SDK 1.1 or later), a reader (SDK 1.3 or later).
pub struct Shared<T: ?Sized>(std::sync::Arc<std::sync::Mutex<Box<T>>>);

impl<T: ?Sized> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(std::sync::Arc::clone(&self.0))
    }
}

impl<T: ?Sized> Shared<T> {
    /// Shares `component`.
    pub fn new(component: Box<T>) -> Self {
        Shared(std::sync::Arc::new(std::sync::Mutex::new(component)))
    }

    /// The component; a panic caught while it was locked leaves it usable.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Box<T>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A model shared by its [`ModelAdapter`] and its requests.
pub type SharedModel = Shared<dyn Model>;

/// A reader shared by its [`ReaderAdapter`] and its requests.
pub type SharedReader = Shared<dyn DatasetReader>;

impl Model for SharedModel {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.lock().forward(x, train)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.lock().parameters()
    }
    fn state_dict(&self) -> Vec<(String, Tensor)> {
        self.lock().state_dict()
    }
    fn load_state_dict(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        self.lock().load_state_dict(state)
    }
    fn set_batch_norm_stats(&mut self, stats: crate::BatchNormStats) -> Result<bool> {
        self.lock().set_batch_norm_stats(stats)
    }
    fn forward_inspected(&self, x: &Tensor, inspection: &crate::Inspection) -> Result<crate::Inspected> {
        self.lock().forward_inspected(x, inspection)
    }
}

impl DatasetReader for SharedReader {
    fn len(&self) -> usize {
        self.lock().len()
    }
    fn sample_shape(&self) -> Vec<i64> {
        self.lock().sample_shape()
    }
    fn get(&mut self, indices: &[i64]) -> Result<(Tensor, Tensor)> {
        self.lock().get(indices)
    }
    fn targets(&mut self) -> Result<Tensor> {
        self.lock().targets()
    }
    fn reset(&mut self, epoch: u64, seed: u64) -> Result<()> {
        self.lock().reset(epoch, seed)
    }
    fn set_stage(&mut self, stage: crate::Stage) -> Result<()> {
        self.lock().set_stage(stage)
    }
    fn sample_names(&mut self) -> Option<Vec<String>> {
        self.lock().sample_names()
    }
}

/// A request's reply: its JSON and its tensors.
type Reply = (serde_json::Value, Vec<(String, Tensor)>);

/// Host side of a loaded model, with the requests of its extension interface when its plugin
/// has one (SDK 1.1 or later).
pub struct DynModel(
    pub ModelFfi_TO<'static, RBox<()>>,
    pub Option<std::sync::Mutex<super::ext::RequestsFfi_TO<'static, RBox<()>>>>,
);

impl DynModel {
    /// The model, with its requests when its plugin has them (SDK 1.1 or later).
    pub fn new(
        model: ModelFfi_TO<'static, RBox<()>>,
        requests: Option<super::ext::RequestsFfi_TO<'static, RBox<()>>>,
    ) -> Self {
        DynModel(model, requests.map(std::sync::Mutex::new))
    }

    /// Sends `request` to the model's plugin; `None` when the plugin has no requests (SDK 1.0).
    fn request(&self, request: &str, args: &str, lent: RVec<NamedTensor>) -> Option<Result<Reply>> {
        let requests = self.1.as_ref()?;
        let mut requests = requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(ok(requests.call(request.into(), args.into(), lent)).and_then(|reply| {
            // SAFETY: the plugin's requests give their reply's tensors.
            unsafe { reply.take() }
        }))
    }
}

impl Model for DynModel {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        // SAFETY: ModelAdapter::forward gives its output.
        ok(self.0.forward(RawTensor::lend(x), train)).map(|t| unsafe { t.take() })
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        // SAFETY: ModelAdapter::parameters gives every tensor.
        unsafe { NamedTensor::take_all(self.0.parameters()) }
    }
    fn state_dict(&self) -> Vec<(String, Tensor)> {
        // SAFETY: ModelAdapter::state_dict gives every tensor.
        unsafe { NamedTensor::take_all(self.0.state_dict()) }
    }
    fn load_state_dict(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        ok(self.0.load_state_dict(NamedTensor::lend_all(state)))
    }
    fn set_batch_norm_stats(&mut self, stats: crate::BatchNormStats) -> Result<bool> {
        let args = serde_json::json!({"stats": super::ext::batch_norm_stats_name(stats)}).to_string();
        match self.request(super::ext::requests::SET_BATCH_NORM_STATS, &args, RVec::new()) {
            None => crate::without_batch_norm_control(self),
            Some(reply) => reply?.0.as_bool().ok_or_else(|| Error::msg("set_batch_norm_stats answered no bool")),
        }
    }
    fn forward_inspected(&self, x: &Tensor, inspection: &crate::Inspection) -> Result<crate::Inspected> {
        let older = || {
            Error::msg("the model's plugin predates SDK 1.5: it cannot look inside its forward pass (Model::forward_inspected)")
        };
        let args = super::ext::inspection_args(inspection);
        let input = [("x".to_string(), x.shallow_clone())];
        // `input` outlives the call that lends it.
        let tensors = match self.request(super::ext::requests::FORWARD_INSPECTED, &args, NamedTensor::lend_all(&input))
        {
            None | Some(Err(Error::Unsupported { .. })) => return Err(older()),
            Some(reply) => reply?.1,
        };
        let mut output = None;
        let mut captured = None;
        for (name, t) in tensors {
            match name.as_str() {
                "output" => output = Some(t),
                "captured" => captured = Some(t),
                _ => {}
            }
        }
        let output = output.ok_or_else(|| Error::msg("forward_inspected answered no `output`"))?;
        Ok(crate::Inspected { output, captured })
    }
}

/// [`DatasetReader`] as a stable-ABI trait object.
#[sabi_trait]
pub trait ReaderFfi: Send {
    /// [`DatasetReader::len`].
    fn len(&self) -> usize;
    /// [`DatasetReader::sample_shape`].
    fn sample_shape(&self) -> RVec<i64>;
    /// [`DatasetReader::get`]: inputs and targets given.
    fn get(&mut self, indices: RSlice<'_, i64>) -> RResult<Tuple2<RawTensor, RawTensor>, ErrorFfi>;
    /// [`DatasetReader::targets`], given.
    fn targets(&mut self) -> RResult<RawTensor, ErrorFfi>;
    /// [`DatasetReader::reset`].
    #[sabi(last_prefix_field)]
    fn reset(&mut self, epoch: u64, seed: u64) -> RResult<(), ErrorFfi>;
}

/// Plugin side of a reader.
pub struct ReaderAdapter<R>(pub R, pub ErrorForm);

impl<R: DatasetReader> ReaderFfi for ReaderAdapter<R> {
    fn len(&self) -> usize {
        guard_in(self.1, "len", || Ok(self.0.len())).into_result().unwrap_or(0)
    }
    fn sample_shape(&self) -> RVec<i64> {
        guard_in(self.1, "sample_shape", || Ok(self.0.sample_shape().into())).into_result().unwrap_or_default()
    }
    fn get(&mut self, indices: RSlice<'_, i64>) -> RResult<Tuple2<RawTensor, RawTensor>, ErrorFfi> {
        guard_in(self.1, "get", || {
            self.0.get(indices.as_slice()).map(|(x, y)| Tuple2(RawTensor::give(x), RawTensor::give(y)))
        })
    }
    fn targets(&mut self) -> RResult<RawTensor, ErrorFfi> {
        guard_in(self.1, "targets", || self.0.targets().map(RawTensor::give))
    }
    fn reset(&mut self, epoch: u64, seed: u64) -> RResult<(), ErrorFfi> {
        guard_in(self.1, "reset", || self.0.reset(epoch, seed))
    }
}

/// Host side of a loaded reader, with the requests of its extension interface when its plugin
/// has one (SDK 1.1 or later; a plugin older than 1.3 answers `set_stage` and `sample_names` as
/// unsupported, which means it has no stages and no names).
pub struct DynReader(pub ReaderFfi_TO<'static, RBox<()>>, pub Option<super::ext::RequestsFfi_TO<'static, RBox<()>>>);

impl DynReader {
    /// The reply to `request`, or `None` when the plugin has no extension interface or does not
    /// know the request (it predates it).
    fn request(&mut self, request: &str, args: serde_json::Value) -> Result<Option<serde_json::Value>> {
        let Some(requests) = &mut self.1 else { return Ok(None) };
        match ok(requests.call(request.into(), args.to_string().as_str().into(), RVec::new())) {
            // SAFETY: the plugin's requests give their reply's tensors.
            Ok(reply) => Ok(Some(unsafe { reply.take() }?.0)),
            Err(Error::Unsupported { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl DatasetReader for DynReader {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn sample_shape(&self) -> Vec<i64> {
        self.0.sample_shape().into_vec()
    }
    fn get(&mut self, indices: &[i64]) -> Result<(Tensor, Tensor)> {
        // SAFETY: ReaderAdapter::get gives both tensors.
        ok(self.0.get(indices.into())).map(|Tuple2(x, y)| unsafe { (x.take(), y.take()) })
    }
    fn targets(&mut self) -> Result<Tensor> {
        // SAFETY: ReaderAdapter::targets gives its tensor.
        ok(self.0.targets()).map(|t| unsafe { t.take() })
    }
    fn reset(&mut self, epoch: u64, seed: u64) -> Result<()> {
        ok(self.0.reset(epoch, seed))
    }
    fn set_stage(&mut self, stage: crate::Stage) -> Result<()> {
        self.request(super::ext::requests::SET_STAGE, serde_json::json!({"stage": stage.as_str()})).map(drop)
    }
    fn sample_names(&mut self) -> Option<Vec<String>> {
        let reply = self.request(super::ext::requests::SAMPLE_NAMES, serde_json::Value::Null).ok()??;
        serde_json::from_value(reply).ok()
    }
}

/// [`Scorer`] as a stable-ABI trait object.
#[sabi_trait]
pub trait ScorerFfi: Send {
    /// [`Scorer::score`]: both tensors lent.
    #[sabi(last_prefix_field)]
    fn score(&self, y_true: RawTensor, y_pred: RawTensor) -> RResult<f64, ErrorFfi>;
}

/// Plugin side of a scorer.
pub struct ScorerAdapter<S>(pub S, pub ErrorForm);

impl<S: Scorer> ScorerFfi for ScorerAdapter<S> {
    fn score(&self, y_true: RawTensor, y_pred: RawTensor) -> RResult<f64, ErrorFfi> {
        // SAFETY: both lent by DynScorer::score for this call.
        guard_in(self.1, "score", || unsafe { self.0.score(&y_true.borrow(), &y_pred.borrow()) })
    }
}

/// Host side of a loaded scorer, with its direction when the library told it (SDK 1.1).
pub struct DynScorer(pub ScorerFfi_TO<'static, RBox<()>>, pub Option<bool>);

impl Scorer for DynScorer {
    fn score(&self, y_true: &Tensor, y_pred: &Tensor) -> Result<f64> {
        ok(self.0.score(RawTensor::lend(y_true), RawTensor::lend(y_pred)))
    }
    fn lower_is_better(&self) -> Option<bool> {
        self.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::ext::{RequestsAdapter, RequestsFfi_TO};
    use crate::{Inspected, Inspection};
    use abi_stable::sabi_trait::TD_Opaque;

    /// Doubles its input; layer `double` is its output.
    struct Double;

    impl Model for Double {
        fn forward(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
            Ok(x * 2)
        }
        fn parameters(&self) -> Vec<(String, Tensor)> {
            Vec::new()
        }
        fn state_dict(&self) -> Vec<(String, Tensor)> {
            Vec::new()
        }
        fn load_state_dict(&mut self, _state: &[(String, Tensor)]) -> Result<()> {
            Ok(())
        }
        fn forward_inspected(&self, x: &Tensor, inspection: &Inspection) -> Result<Inspected> {
            let output = self.forward(x, false)?;
            let captured = match inspection.capture.as_deref() {
                None => None,
                Some("double") => Some(output.shallow_clone()),
                Some(other) => return Err(Error::msg(format!("no layer `{other}`"))),
            };
            Ok(Inspected { output, captured })
        }
    }

    /// `Double` as a plugin of SDK 1.5 or later (`answers`), of 1.1 to 1.4 (requests that do
    /// not know `forward_inspected`), or of 1.0 (no requests) would hand it to the host.
    fn loaded(requests: Option<bool>) -> DynModel {
        let model = SharedModel::new(Box::new(Double));
        let base = ModelFfi_TO::from_value(ModelAdapter(model.clone(), ErrorForm::WithKind), TD_Opaque);
        let requests = requests.map(|answers| {
            let adapter = RequestsAdapter { model: answers.then_some(model), ..RequestsAdapter::default() };
            RequestsFfi_TO::from_value(adapter, TD_Opaque)
        });
        DynModel::new(base, requests)
    }

    #[test]
    fn a_look_inside_the_forward_pass_crosses_the_abi_and_older_plugins_refuse_it_in_one_line() {
        let x = Tensor::from_slice(&[1.0f32, 2.0]);
        let asked = Inspection { guided_relu: false, capture: Some("double".into()) };
        let seen = loaded(Some(true)).forward_inspected(&x, &asked).unwrap();
        assert_eq!(Vec::<f32>::try_from(&seen.output).unwrap(), [2.0, 4.0]);
        assert_eq!(Vec::<f32>::try_from(&seen.captured.unwrap()).unwrap(), [2.0, 4.0]);
        let missing = Inspection { guided_relu: false, capture: Some("half".into()) };
        assert!(loaded(Some(true)).forward_inspected(&x, &missing).unwrap_err().to_string().contains("`half`"));
        for older in [Some(false), None] {
            let e = loaded(older).forward_inspected(&x, &asked).unwrap_err().to_string();
            assert!(e.contains("predates SDK 1.5") && !e.contains('\n'), "{older:?}: {e}");
            assert_eq!(Vec::<f32>::try_from(loaded(older).forward(&x, false).unwrap()).unwrap(), [2.0, 4.0]);
        }
    }
}
