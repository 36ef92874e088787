//! NIR graphs in HDF5, laid out as the `nir` package writes them: `version`, then group
//! `node` (type `NIRGraph`) with `nodes/NAME/{type, ARRAY...}` and `edges` (E x 2
//! strings). Strings are written fixed-length (h5py reads them as bytes, as nir expects).

use super::{Graph, Node};
use ndarray::{ArrayD, IxDyn};
use rust_hdf5::{DatatypeMessage, H5File, H5Group, Hdf5Error};
use std::path::Path;

/// The NIR version written (the layout of nir 1.0).
const VERSION: &str = "1.0.8";

/// Writes `graph` to `path` (replacing it).
pub fn write(path: &Path, graph: &Graph) -> Result<(), String> {
    let e = |e: Hdf5Error| format!("cannot write `{}`: {e}", path.display());
    let f = H5File::create(path).map_err(e)?;
    let root = f.root_group();
    string(&root, "version", &[VERSION], &[]).map_err(e)?;
    let node = f.create_group("node").map_err(e)?;
    string(&node, "type", &["NIRGraph"], &[]).map_err(e)?;
    let nodes = node.create_group("nodes").map_err(e)?;
    for (name, n) in &graph.nodes {
        let g = nodes.create_group(name).map_err(e)?;
        string(&g, "type", &[n.kind.as_str()], &[]).map_err(e)?;
        for (p, a) in &n.params {
            let shape: Vec<usize> = a.shape().to_vec();
            let values: Vec<f64> = a.iter().copied().collect();
            // Shapes are integers in NIR (`Input.shape`, `Conv.stride`, ...).
            if p == "shape" {
                let ints: Vec<i64> = values.iter().map(|v| *v as i64).collect();
                g.new_dataset::<i64>().shape(shape).create(p).map_err(e)?.write_raw(&ints).map_err(e)?;
            } else {
                g.new_dataset::<f64>().shape(shape).create(p).map_err(e)?.write_raw(&values).map_err(e)?;
            }
        }
    }
    let flat: Vec<&str> = graph.edges.iter().flat_map(|(a, b)| [a.as_str(), b.as_str()]).collect();
    string(&node, "edges", &flat, &[graph.edges.len(), 2]).map_err(e)?;
    f.close().map_err(e)
}

/// A fixed-length string dataset: a scalar (`shape` empty, one string) or an array.
fn string(g: &H5Group, name: &str, values: &[&str], shape: &[usize]) -> Result<(), Hdf5Error> {
    let width = values.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
    let mut raw = Vec::with_capacity(values.len() * width);
    for v in values {
        raw.extend_from_slice(v.as_bytes());
        raw.resize(raw.len() + width - v.len(), 0);
    }
    let b = g.new_dataset::<u8>().datatype(DatatypeMessage::fixed_string_utf8(width as u32));
    let b = if shape.is_empty() { b.scalar() } else { b.shape(shape) };
    b.create(name)?.write_raw_bytes(&raw)
}

/// Reads the graph in `path`.
pub fn read(path: &Path) -> Result<Graph, String> {
    let e = |e: Hdf5Error| format!("cannot read `{}` as a NIR graph: {e}", path.display());
    let f = H5File::open(path).map_err(e)?;
    let kind = strings(&f, "node/type").map_err(e)?;
    if kind.first().map(String::as_str) != Some("NIRGraph") {
        return Err(format!("`{}` is not a NIR graph: its `node/type` is {kind:?}, not \"NIRGraph\"", path.display()));
    }
    let mut graph = Graph::default();
    let nodes = f.root_group().group("node").and_then(|n| n.group("nodes")).map_err(e)?;
    for name in nodes.group_names().map_err(e)? {
        let g = nodes.group(&name).map_err(e)?;
        let base = format!("node/nodes/{name}");
        let kind = strings(&f, &format!("{base}/type")).map_err(e)?.into_iter().next().unwrap_or_default();
        let mut params = Vec::new();
        for p in g.dataset_names().map_err(e)? {
            if p == "type" {
                continue;
            }
            let d = f.dataset(&format!("{base}/{p}")).map_err(e)?;
            // Arrays of numbers; anything else (a nested graph's strings) is kept out and
            // the node is refused on import by its type.
            // (integers, such as `Input.shape`, are read as such: the crate does not widen
            // them to floats).
            let values = match d.read_numeric_as::<f64>() {
                Ok(v) => v,
                Err(_) => match d.read_numeric_as::<i64>() {
                    Ok(v) => v.into_iter().map(|x| x as f64).collect(),
                    Err(_) => continue,
                },
            };
            let a = ArrayD::from_shape_vec(IxDyn(&d.shape()), values).map_err(|x| format!("`{}`: node `{name}`, `{p}`: {x}", path.display()))?;
            params.push((p, a));
        }
        graph.nodes.push((name, Node { kind, params }));
    }
    let flat = strings(&f, "node/edges").map_err(e)?;
    graph.edges = flat.chunks(2).filter(|c| c.len() == 2).map(|c| (c[0].clone(), c[1].clone())).collect();
    Ok(graph)
}

fn strings(f: &H5File, path: &str) -> Result<Vec<String>, Hdf5Error> {
    f.dataset(path)?.read_strings()
}
