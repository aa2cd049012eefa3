//! `pytorch_model.bin`: PyTorch's zip checkpoint (`torch.save` since 1.6), read without
//! executing anything. The zip's `data.pkl` is parsed by routerdc's pickle machine; only the
//! globals a state dict needs are accepted (`collections.OrderedDict`,
//! `torch._utils._rebuild_tensor_v2`, `torch._utils._rebuild_parameter`, the typed storage
//! classes), and each tensor's bytes are copied out of `data/<key>` after checking that its
//! offset, shape and strides stay inside that storage.

use std::io::Read as _;
use std::path::Path;

use crate::error::{BoxError, Error, Result};
pub use crate::io::pickle::state_dict::{DType, RawTensor};
use crate::io::pickle::{state_dict, vm};

/// Every tensor of the state dict in `path`, in file order.
pub fn read_torch_bin(path: &Path) -> Result<Vec<RawTensor>> {
    const HINT: &str = "pytorch_model.bin must be a state dict saved by torch.save (zip format, PyTorch ≥ 1.6); or convert it to model.safetensors";
    let bad = |message: String| Error::encoder(path, message, HINT);
    let bad_from = |message: String, error: BoxError| Error::encoder_from(path, message, HINT, error);
    let file = std::fs::File::open(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    let mut archive = zip::ZipArchive::new(file).map_err(|error| {
        bad_from("not a zip archive; legacy (pre-1.6) torch.save files are not supported".into(), error.into())
    })?;
    let pickle_name = archive
        .file_names()
        .map(str::to_owned)
        .find(|name| name.ends_with("/data.pkl") || name == "data.pkl")
        .ok_or_else(|| bad("the archive holds no data.pkl".into()))?;
    let prefix = pickle_name.trim_end_matches("data.pkl").to_owned();
    let mut read_entry = |name: &str, limit: u64| -> Result<Vec<u8>> {
        let mut entry = archive.by_name(name).map_err(|error| bad_from(format!("entry `{name}`"), error.into()))?;
        if entry.size() > limit {
            return Err(bad(format!("entry `{name}` declares {} bytes, more than the file holds", entry.size())));
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        // Never more than declared, whatever a compressed entry inflates to.
        (&mut entry)
            .take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
        if bytes.len() as u64 > limit {
            return Err(bad(format!("entry `{name}` holds more bytes than the file")));
        }
        Ok(bytes)
    };
    let file_len = std::fs::metadata(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?.len();
    let pickle_bytes = read_entry(&pickle_name, file_len)?;
    let pickle = vm::parse(&pickle_bytes).map_err(|error| bad_from("data.pkl".into(), error.into()))?;

    // The tensors' bytes together: a real state dict's tensors are views of distinct storages
    // (tied weights view one twice), so twice the file and some slack is plenty; a file whose
    // views expand past that (stride 0, many views of one storage) is refused.
    let budget = file_len.saturating_mul(2).saturating_add(64 << 20);
    let mut failed_read = None;
    let mut read_storage = |key: &str| -> std::result::Result<Vec<u8>, String> {
        read_entry(&format!("{prefix}data/{key}"), file_len).map_err(|error| {
            let message = error.to_string();
            failed_read = Some(error);
            message
        })
    };
    let tensors = state_dict::tensors(&pickle.root, &mut read_storage, budget);
    if let Some(error) = failed_read {
        return Err(error);
    }
    tensors.map_err(bad)
}
