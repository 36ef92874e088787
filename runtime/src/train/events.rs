//! Event-camera recordings (`events:PATH`): `(t, x, y, p)` events as tonic keeps them
//! (DVS Gesture, N-MNIST, ...), binned into steps of the network's `dt` and fed as spikes
//! of the channels `(p, y, x)`, the layout a `conv(...)` input of `p` channels expects.
//!
//! The archive (`.npz`) holds every sample's events one after another: `t` (event times
//! in microseconds, tonic's unit), `x`, `y`, `p` (whole numbers), `offsets` (samples + 1:
//! sample i's events are `offsets[i]..offsets[i + 1]`), `labels` (samples), and
//! `sensor_size` (width, height, polarities), as tonic's `sensor_size`. `t_test`,
//! `x_test`, `y_test`, `p_test`, `offsets_test` and `labels_test` give the held-out set;
//! without them the last tenth of the samples is held out. A sample's time starts at its
//! first event (as tonic's `ToFrame` bins). Binning and batches are the SHD loader's
//! ([`ShdDataset`]): several events of one channel in one step are one spike.

use std::path::Path;

use super::dataset::{Split, npz_names, read_npz_array};
use super::shd::{Samples, ShdDataset, ShdOptions, step_of, steps_for};
use crate::error::RuntimeError;
use ndarray::ArrayD;

fn err(msg: String) -> RuntimeError {
    RuntimeError::Input(msg)
}

/// `split` of the event recordings in `path`, for a readout of `outputs` classes and an
/// input of `opts.channels` neurons (polarities x height x width).
pub fn load_events(path: &Path, split: Split, opts: &ShdOptions, outputs: usize, batch: usize, seed: u64) -> Result<ShdDataset, RuntimeError> {
    let names = npz_names(path)?;
    let has_test = names.iter().any(|n| n == "t_test");
    let suffix = if split == Split::Test && has_test { "_test" } else { "" };
    let file = path.display();
    let read = |name: &str| -> Result<ArrayD<f64>, RuntimeError> {
        if !names.iter().any(|n| n == name) {
            let need = "t, x, y, p, offsets, labels and sensor_size";
            return Err(err(format!("`{file}` has no array `{name}`: an events archive needs {need} (and their `_test` forms for a held-out set)")));
        }
        read_npz_array(path, name)
    };
    let sensor = read("sensor_size")?;
    let (width, height, polarities) = match sensor.as_slice() {
        Some(&[w, h, p]) if [w, h, p].iter().all(|v| *v >= 1.0 && v.fract() == 0.0) => (w as usize, h as usize, p as usize),
        _ => return Err(err(format!("`{file}`: `sensor_size` must be three whole numbers >= 1 (width, height, polarities), it is {sensor}"))),
    };
    let channels = polarities * height * width;
    if let Some(c) = opts.channels.filter(|&c| c != channels) {
        return Err(err(format!(
            "`{file}`: the sensor has {polarities} x {height} x {width} = {channels} channels (polarity, y, x) but the network's input has {c} neurons"
        )));
    }
    let one_dim = |name: &str| -> Result<Vec<f64>, RuntimeError> {
        let a = read(&format!("{name}{suffix}"))?;
        if a.ndim() != 1 {
            return Err(err(format!("`{file}`: `{name}{suffix}` must have one dimension, it has shape {:?}", a.shape())));
        }
        Ok(a.iter().copied().collect())
    };
    let labels = one_dim("labels")?;
    let offsets = one_dim("offsets")?;
    let n = labels.len();
    if n == 0 {
        return Err(err(format!("`{file}`: `labels{suffix}` has no samples")));
    }
    if let Some((i, bad)) = labels.iter().enumerate().find(|(_, v)| !(**v >= 0.0 && v.fract() == 0.0 && (**v as usize) < outputs)) {
        return Err(err(format!("`{file}`: `labels{suffix}`[{i}] = {bad}: labels must be whole numbers from 0 to {} (the readout has {outputs} outputs)", outputs.saturating_sub(1))));
    }
    let t = one_dim("t")?;
    let events = t.len();
    if offsets.len() != n + 1 {
        return Err(err(format!("`{file}`: `offsets{suffix}` has {} entries; {n} samples need {}", offsets.len(), n + 1)));
    }
    let bad_offset = offsets.iter().enumerate().find(|(i, o)| {
        let ok = o.fract() == 0.0 && **o >= 0.0 && **o <= events as f64 && (*i == 0 || **o >= offsets[i - 1]);
        !ok || (*i == 0 && **o != 0.0) || (*i == n && **o != events as f64)
    });
    if let Some((i, o)) = bad_offset {
        return Err(err(format!(
            "`{file}`: `offsets{suffix}`[{i}] = {o}: offsets must rise from 0 to the number of events ({events}), sample i's events being offsets[i]..offsets[i + 1]"
        )));
    }
    let coords: Vec<(&str, Vec<f64>, usize)> = vec![("x", one_dim("x")?, width), ("y", one_dim("y")?, height), ("p", one_dim("p")?, polarities)];
    for (name, v, limit) in &coords {
        if v.len() != events {
            return Err(err(format!("`{file}`: `{name}{suffix}` has {} events but `t{suffix}` has {events}", v.len())));
        }
        if let Some((k, bad)) = v.iter().enumerate().find(|(_, c)| !(**c >= 0.0 && c.fract() == 0.0 && (**c as usize) < *limit)) {
            let what = if *name == "p" { "polarities (map -1 to 0 first)" } else { "pixel coordinates" };
            return Err(err(format!("`{file}`: `{name}{suffix}`[{k}] = {bad}: {what} must be whole numbers from 0 to {} (`sensor_size`)", limit - 1)));
        }
    }
    if let Some((k, bad)) = t.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(err(format!("`{file}`: `t{suffix}`[{k}] = {bad}: event times must be finite (microseconds)")));
    }
    let (dt, max_time) = (opts.dt, opts.max_time);
    if !(dt > 0.0 && dt.is_finite() && max_time > 0.0 && max_time.is_finite()) {
        return Err(err(format!("event binning needs dt > 0 and max_time > 0 (got dt {dt} s, max_time {max_time} s)")));
    }
    let steps = steps_for(max_time, dt);
    if (steps as u64) * (channels as u64) > u64::from(u32::MAX) {
        return Err(err(format!("{steps} steps x {channels} channels is too many for the event loader (at most 2^32 - 1); raise dt or lower max_time")));
    }
    // Without a held-out set in the file, the last tenth is held out (as `shd:`).
    let held = (n / 10).max(1).min(n.saturating_sub(1));
    let keep = |i: usize| has_test || match split {
        Split::Train => i < n - held,
        Split::Test => i >= n - held,
    };
    let (x, y, p) = (&coords[0].1, &coords[1].1, &coords[2].1);
    let mut out = Samples::new(channels);
    for i in (0..n).filter(|&i| keep(i)) {
        let range = offsets[i] as usize..offsets[i + 1] as usize;
        let start = t[range.clone()].iter().copied().fold(f64::INFINITY, f64::min);
        for k in range {
            let step = step_of((t[k] - start) * 1e-6, dt);
            if step < steps as f64 {
                let unit = (p[k] as usize * height + y[k] as usize) * width + x[k] as usize;
                out.keys.push(step as u32 * channels as u32 + unit as u32);
            }
        }
        out.end_sample(labels[i] as usize, i);
    }
    if out.classes.is_empty() {
        return Err(err(format!("`{file}` has no samples for the {split:?} split (it needs at least two to hold one out)")));
    }
    out.keys.shrink_to_fit();
    Ok(ShdDataset::from_samples(out, split, opts, outputs, batch, seed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array1;
    use ndarray_npy::NpzWriter;

    /// One archive: `samples` as (label, events (t µs, x, y, p)), `sensor_size` (w, h, p),
    /// plus `extra` arrays (name, values) that replace or add to them.
    fn write(path: &Path, sensor: [f64; 3], samples: &[(f64, Vec<[f64; 4]>)], suffix: &str, extra: &[(&str, Vec<f64>)]) {
        let mut npz = NpzWriter::new(std::fs::File::create(path).unwrap());
        let mut arrays: Vec<(String, Vec<f64>)> = vec![("sensor_size".into(), sensor.to_vec())];
        for (k, name) in ["t", "x", "y", "p"].iter().enumerate() {
            arrays.push((format!("{name}{suffix}"), samples.iter().flat_map(|(_, ev)| ev.iter().map(move |e| e[k])).collect()));
        }
        let mut offsets = vec![0.0];
        for (_, ev) in samples {
            offsets.push(offsets.last().unwrap() + ev.len() as f64);
        }
        arrays.push((format!("offsets{suffix}"), offsets));
        arrays.push((format!("labels{suffix}"), samples.iter().map(|(l, _)| *l).collect()));
        for (name, v) in extra {
            arrays.retain(|(n, _)| n != name);
            arrays.push((name.to_string(), v.clone()));
        }
        for (name, v) in arrays {
            npz.add_array(name, &Array1::from(v)).unwrap();
        }
        npz.finish().unwrap();
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("snnc-events-{}-{name}.npz", std::process::id()))
    }

    fn opts(channels: usize) -> ShdOptions {
        ShdOptions { dt: 1e-3, max_time: 4e-3, channels: Some(channels) }
    }

    #[test]
    fn events_are_binned_from_each_samples_first_event_into_polarity_row_column_channels() {
        // Sensor 3 wide, 2 high, 2 polarities: channel (p * 2 + y) * 3 + x.
        let path = tmp("bins");
        let a = vec![
            [1000.0, 2.0, 1.0, 1.0], // step 0, channel (1*2+1)*3+2 = 11
            [1500.0, 2.0, 1.0, 1.0], // step 0 again: one spike
            [2600.0, 0.0, 1.0, 0.0], // 1.6 ms: step 1, channel 3
            [5000.0, 1.0, 0.0, 0.0], // 4 ms: past max_time, dropped
        ];
        let b = vec![[12_000.0, 1.0, 0.0, 1.0], [10_000.0, 0.0, 0.0, 0.0], [13_999.0, 2.0, 0.0, 0.0]];
        write(&path, [3.0, 2.0, 2.0], &[(1.0, a), (0.0, b)], "", &[]);
        let d = load_events(&path, Split::Train, &opts(12), 2, 1, 0).unwrap();
        // No `_test` arrays and two samples: the last is held out.
        assert_eq!(d.len(), 1);
        assert_eq!(d.sample(0), (0, 1, vec![(0, 11), (1, 3)]));
        let t = load_events(&path, Split::Test, &opts(12), 2, 1, 0).unwrap();
        // Sample 1 starts at its earliest event (10 ms), not its first listed.
        assert_eq!(t.sample(0), (1, 0, vec![(0, 0), (2, 7), (3, 2)]));
        assert_eq!((d.channels(), crate::learn::Sequence::steps(&d)), (12, 4));
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn a_held_out_set_in_the_archive_is_used_whole() {
        let path = tmp("test");
        let train: Vec<(f64, Vec<[f64; 4]>)> = (0..5).map(|i| (f64::from(i % 2), vec![[0.0, 0.0, 0.0, 0.0]])).collect();
        let mut npz_extra: Vec<(&str, Vec<f64>)> = vec![
            ("t_test", vec![0.0, 0.0]),
            ("x_test", vec![1.0, 0.0]),
            ("y_test", vec![0.0, 0.0]),
            ("p_test", vec![0.0, 0.0]),
            ("offsets_test", vec![0.0, 1.0, 2.0]),
        ];
        npz_extra.push(("labels_test", vec![1.0, 0.0]));
        write(&path, [2.0, 1.0, 1.0], &train, "", &npz_extra);
        assert_eq!(load_events(&path, Split::Train, &opts(2), 2, 2, 0).unwrap().len(), 5);
        let t = load_events(&path, Split::Test, &opts(2), 2, 2, 0).unwrap();
        assert_eq!((t.len(), t.sample(0)), (2, (0, 1, vec![(0, 1)])));
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn bad_archives_are_refused_naming_the_array_and_entry() {
        let path = tmp("bad");
        let ok = || vec![(0.0, vec![[0.0, 1.0, 0.0, 0.0], [10.0, 0.0, 0.0, 1.0]]), (1.0, vec![[0.0, 0.0, 0.0, 0.0]])];
        let cases: Vec<(&str, [f64; 3], Vec<(&str, Vec<f64>)>, usize, &str)> = vec![
            ("x out of range", [2.0, 1.0, 2.0], vec![("x", vec![2.0, 0.0, 0.0])], 4, "`x`[0] = 2: pixel coordinates must be whole numbers from 0 to 1"),
            ("polarity -1", [2.0, 1.0, 2.0], vec![("p", vec![0.0, -1.0, 0.0])], 4, "`p`[1] = -1: polarities (map -1 to 0 first)"),
            ("offsets", [2.0, 1.0, 2.0], vec![("offsets", vec![0.0, 2.0, 2.0])], 4, "`offsets`[2] = 2: offsets must rise from 0 to the number of events (3)"),
            ("lengths", [2.0, 1.0, 2.0], vec![("y", vec![0.0, 0.0])], 4, "`y` has 2 events but `t` has 3"),
            ("time", [2.0, 1.0, 2.0], vec![("t", vec![0.0, f64::NAN, 0.0])], 4, "`t`[1] = NaN: event times must be finite"),
            ("channels", [2.0, 1.0, 2.0], vec![], 5, "the sensor has 2 x 1 x 2 = 4 channels (polarity, y, x) but the network's input has 5 neurons"),
            ("sensor", [2.0, 0.0, 2.0], vec![], 4, "`sensor_size` must be three whole numbers >= 1"),
            ("label", [2.0, 1.0, 2.0], vec![("labels", vec![0.0, 2.0])], 4, "`labels`[1] = 2: labels must be whole numbers from 0 to 1"),
        ];
        for (what, sensor, extra, channels, want) in cases {
            write(&path, sensor, &ok(), "", &extra);
            let e = load_events(&path, Split::Train, &opts(channels), 2, 1, 0).err().unwrap_or_else(|| panic!("{what}: accepted")).to_string();
            assert!(e.contains(want), "{what}: {e}");
        }
        let mut npz = NpzWriter::new(std::fs::File::create(&path).unwrap());
        npz.add_array("labels", &Array1::from(vec![0.0])).unwrap();
        npz.finish().unwrap();
        let e = load_events(&path, Split::Train, &opts(4), 2, 1, 0).err().unwrap().to_string();
        assert!(e.contains("has no array `sensor_size`: an events archive needs t, x, y, p, offsets, labels and sensor_size"), "{e}");
        std::fs::remove_file(&path).ok();
    }
}
