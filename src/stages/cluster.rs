//! `routerdc cluster` (`docs/method.md`, "Clusters"): k-means over the embeddings of the training queries of every
//! table together, then each query of every table gets the id of its nearest centroid.
//!
//! The vectors come from `routerdc embed` (`--embeddings DIR`) or are computed on the spot with
//! the same encoder options. An optional PCA first projects them to a few dimensions (the
//! reference used t-SNE to 5; no maintained Rust t-SNE crate exists, so that is not offered).

use std::path::{Path, PathBuf};

use linfa::prelude::*;
use linfa_clustering::KMeans;
use ndarray::{Array1, Array2, ArrayView1, Axis};
use polars::prelude::*;
use rand_xoshiro::Xoshiro256Plus;
use rand_xoshiro::rand_core::SeedableRng;

use super::embed::EncoderOptions;
use crate::error::{Error, Result};
use crate::table::{LoadedTable, Split};

/// Which rows the centroids are fitted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FitOn {
    /// Rows of the train split (by the `split` column or a `_train` table name).
    #[default]
    Train,
    /// Every row of every table.
    All,
}

/// Optional reduction before k-means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Reduce {
    #[default]
    None,
    /// Principal components (of the fitted rows), `--dims` of them.
    Pca,
}

/// Settings of `routerdc cluster`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterConfig {
    /// Folder of scored tables (`*.parquet`).
    #[arg(long, value_name = "DIR")]
    pub tables: PathBuf,
    /// Folder for the tables with `cluster_id` set, and `cluster_report/clusters.{parquet,csv,md}`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Embeddings from `routerdc embed` (one `<table>.parquet` per table); default: embed now.
    #[arg(long, value_name = "DIR")]
    pub embeddings: Option<PathBuf>,
    /// Number of clusters (the released RouterDC cluster files use 5).
    #[arg(long, short = 'k', default_value_t = 5)]
    pub k: usize,
    /// Seed of the k-means++ initialisation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Most Lloyd iterations per restart.
    #[arg(long, default_value_t = 1000)]
    pub max_iterations: u64,
    /// Stop a restart when the centroids' squared shift falls below this times the data's mean
    /// per-feature variance (scikit-learn's `tol`).
    #[arg(long, default_value_t = 1e-4)]
    pub tolerance: f32,
    /// Restarts from new k-means++ seeds; the lowest inertia wins.
    #[arg(long, default_value_t = 3)]
    pub restarts: usize,
    /// Fit on at most this many rows per table (the first ones; the reference took 2000); 0 = all.
    #[arg(long, default_value_t = 2000)]
    pub max_per_table: usize,
    /// Which rows the centroids are fitted on; every row gets an id.
    #[arg(long, value_enum, default_value_t = FitOn::Train)]
    pub fit_on: FitOn,
    /// Reduce the vectors first.
    #[arg(long, value_enum, default_value_t = Reduce::None)]
    pub reduce: Reduce,
    /// Dimensions kept by `--reduce pca`.
    #[arg(long, default_value_t = 5)]
    pub dims: usize,
    #[command(flatten)]
    pub encoder: EncoderOptions,
}

/// The fitted model and what it did.
#[derive(Debug, Clone)]
pub struct Clustering {
    /// Cluster id of every row of every table, table by table.
    pub ids: Vec<Vec<usize>>,
    /// Rows the centroids were fitted on.
    pub fitted_rows: usize,
    /// Sum of squared distances of the fitted rows to their centroid (scikit-learn's `inertia_`).
    pub inertia: f64,
    pub centroids: Array2<f32>,
}

/// Whether row `row` of `loaded` is a training row.
pub fn is_train_row(loaded: &LoadedTable, row: usize) -> bool {
    match loaded.table.splits[row] {
        Some(split) => split == Split::Train,
        None => Split::from_dataset_name(&loaded.table.dataset) == Some(Split::Train),
    }
}

/// Fit k-means on the chosen rows of `vectors` (per table, row-major) and label every row.
pub fn cluster(config: &ClusterConfig, tables: &[LoadedTable], vectors: &[Array2<f32>]) -> Result<Clustering> {
    if config.k == 0 {
        return Err(Error::setting("k", "must be at least 1"));
    }
    let mut fit_rows: Vec<ArrayView1<f32>> = Vec::new();
    for (loaded, matrix) in tables.iter().zip(vectors) {
        let mut taken = 0;
        for row in 0..matrix.nrows() {
            if config.max_per_table > 0 && taken >= config.max_per_table {
                break;
            }
            if config.fit_on == FitOn::All || is_train_row(loaded, row) {
                fit_rows.push(matrix.row(row));
                taken += 1;
            }
        }
    }
    if fit_rows.len() < config.k {
        return Err(Error::input(
            format!("{} rows to fit {} clusters on; k-means needs at least k rows", fit_rows.len(), config.k),
            if config.fit_on == FitOn::Train {
                "no or few rows are marked train (split column or a `_train` table name); pass `--fit-on all` to fit on every row"
            } else {
                "lower -k"
            },
        ));
    }
    let fit = ndarray::stack(Axis(0), &fit_rows).map_err(|error| {
        Error::input_from("the embeddings differ in size", "embed every table with one encoder", error)
    })?;
    let projection = match config.reduce {
        Reduce::None => None,
        Reduce::Pca => Some(pca(&fit, config.dims.clamp(1, fit.ncols()))?),
    };
    let project = |matrix: &Array2<f32>| match &projection {
        Some((mean, components)) => (matrix - mean).dot(&components.t()),
        None => matrix.clone(),
    };
    let fit = project(&fit);
    // scikit-learn's tolerance: the squared centroid shift, relative to the mean per-feature
    // variance of the data; linfa compares the (unsquared) shift with an absolute tolerance.
    let mean_variance = fit.var_axis(Axis(0), 0.0).mean().unwrap_or(0.0);
    let tolerance = if mean_variance > 0.0 { (config.tolerance * mean_variance).sqrt() } else { config.tolerance };
    let model = KMeans::params_with(config.k, Xoshiro256Plus::seed_from_u64(config.seed), SquaredL2)
        .n_runs(config.restarts.max(1))
        .max_n_iterations(config.max_iterations)
        .tolerance(tolerance)
        .fit(&DatasetBase::from(fit.clone()))
        .map_err(|source| Error::KMeans { rows: fit.nrows(), k: config.k, source })?;
    let centroids = model.centroids().clone();
    let fitted: Array1<usize> = model.predict(&fit);
    let inertia =
        fit.outer_iter().zip(fitted.iter()).map(|(row, &id)| squared_distance(row, centroids.row(id))).sum::<f64>();
    let ids = vectors.iter().map(|matrix| model.predict(&project(matrix)).to_vec()).collect();
    Ok(Clustering { ids, fitted_rows: fit.nrows(), inertia, centroids })
}

/// linfa's L2 distance, with the squared distance summed in eight lanes so that the compiler
/// vectorises it (linfa's own sums one element at a time, 3× slower than scikit-learn here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SquaredL2;

impl linfa_nn::distance::Distance<f32> for SquaredL2 {
    fn distance<D: ndarray::Dimension>(&self, a: ndarray::ArrayView<f32, D>, b: ndarray::ArrayView<f32, D>) -> f32 {
        self.rdistance(a, b).sqrt()
    }

    #[inline]
    fn rdistance<D: ndarray::Dimension>(&self, a: ndarray::ArrayView<f32, D>, b: ndarray::ArrayView<f32, D>) -> f32 {
        match (a.as_slice(), b.as_slice()) {
            (Some(a), Some(b)) => squared_l2(a, b),
            _ => a.iter().zip(b.iter()).map(|(x, y)| (x - y) * (x - y)).sum(),
        }
    }

    fn rdist_to_dist(&self, rdist: f32) -> f32 {
        rdist.sqrt()
    }

    fn dist_to_rdist(&self, dist: f32) -> f32 {
        dist * dist
    }
}

#[inline]
fn squared_l2(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, y)| (x - y) * (x - y)).sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..8 {
            let d = x[lane] - y[lane];
            lanes[lane] += d * d;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

fn squared_distance(a: ArrayView1<f32>, b: ArrayView1<f32>) -> f64 {
    a.iter().zip(b.iter()).map(|(x, y)| f64::from(x - y).powi(2)).sum()
}

/// Mean and the top `dims` principal directions (rows) of `x`, from linfa-reduction's PCA
/// (a truncated SVD of the centred data, seeded, so runs agree). Each direction's sign is
/// fixed so that its largest |entry| is positive.
pub fn pca(x: &Array2<f32>, dims: usize) -> Result<(Array1<f32>, Array2<f32>)> {
    let fitted = linfa_reduction::Pca::params(dims)
        .fit(&DatasetBase::from(x.mapv(f64::from)))
        .map_err(|source| Error::Pca { dims, source: source.into() })?;
    let mut components = fitted.components().clone();
    for mut v in components.outer_iter_mut() {
        let largest = v.iter().copied().fold(0.0f64, |best, x| if x.abs() > best.abs() { x } else { best });
        if largest < 0.0 {
            v.mapv_inplace(|x| -x);
        }
    }
    Ok((fitted.mean().mapv(|x| x as f32), components.mapv(|x| x as f32)))
}

/// Per table and cluster: how many queries (all rows, and the fitted split).
pub fn report_frame(tables: &[LoadedTable], clustering: &Clustering, k: usize) -> Result<DataFrame> {
    let (mut dataset, mut cluster, mut queries, mut train) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (loaded, ids) in tables.iter().zip(&clustering.ids) {
        for id in 0..k {
            dataset.push(loaded.table.dataset.clone());
            cluster.push(id as i64);
            queries.push(ids.iter().filter(|&&x| x == id).count() as i64);
            train.push(ids.iter().enumerate().filter(|&(row, &x)| x == id && is_train_row(loaded, row)).count() as i64);
        }
    }
    DataFrame::new_infer_height(vec![
        Column::new("dataset".into(), dataset),
        Column::new("cluster_id".into(), cluster),
        Column::new("queries".into(), queries),
        Column::new("train_queries".into(), train),
    ])
    .map_err(Error::polars("building the cluster report"))
}

/// The report as markdown: a datasets × clusters table of query counts, and the inertia.
pub fn report_markdown(tables: &[LoadedTable], clustering: &Clustering, k: usize) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "# Clusters\n\nk = {k}, fitted on {} rows, inertia (sum of squared distances) {:.4}\n\n| dataset |",
        clustering.fitted_rows, clustering.inertia
    );
    for id in 0..k {
        let _ = write!(out, " {id} |");
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(k));
    out.push('\n');
    for (loaded, ids) in tables.iter().zip(&clustering.ids) {
        let _ = write!(out, "| {} |", loaded.table.dataset);
        for id in 0..k {
            let _ = write!(out, " {} |", ids.iter().filter(|&&x| x == id).count());
        }
        out.push('\n');
    }
    out
}

/// Write every table with its cluster ids into `out`, and the cluster report.
pub fn write_outputs(config: &ClusterConfig, tables: &[LoadedTable], clustering: &Clustering) -> Result<Vec<PathBuf>> {
    // All files are staged and moved into `--out` together.
    let outputs = crate::io::Outputs::new(&config.out)?;
    let out = outputs.dir();
    let mut written = Vec::new();
    for (loaded, ids) in tables.iter().zip(&clustering.ids) {
        let mut table = loaded.table.clone();
        table.cluster_ids = ids.iter().map(|&id| Some(id as i64)).collect();
        written.push(crate::io::write_table(&table, out)?);
    }
    // The report goes into a subfolder, so that `out` holds tables only (later stages read every
    // `*.parquet` in it as a table).
    let report = out.join("cluster_report");
    std::fs::create_dir_all(&report).map_err(|source| Error::Write { path: report.clone(), source })?;
    let mut frame = report_frame(tables, clustering, config.k)?;
    let parquet = report.join("clusters.parquet");
    crate::io::write_parquet(&mut frame, &parquet)?;
    let csv = report.join("clusters.csv");
    crate::io::write_csv(&mut frame, &csv)?;
    let md = report.join("clusters.md");
    crate::io::write_text(&report_markdown(tables, clustering, config.k), &md)?;
    written.extend([parquet, csv, md]);
    let written = written.iter().map(|path| outputs.final_path(path)).collect();
    outputs.commit()?;
    Ok(written)
}

/// The vectors of each table from `routerdc embed`'s files in `dir`, checked row by row
/// against the table's query ids.
pub fn read_vectors(dir: &Path, tables: &[LoadedTable]) -> Result<Vec<Array2<f32>>> {
    tables
        .iter()
        .map(|loaded| {
            let path = crate::io::named_file(dir, &loaded.table.dataset, ".parquet")?;
            let (ids, rows) = super::embed::read_embeddings(&path)?;
            if ids != loaded.table.query_ids {
                return Err(Error::input(
                    format!(
                        "`{}` does not hold the queries of `{}` in its order",
                        path.display(),
                        loaded.path.display()
                    ),
                    "embed the same tables again with `routerdc embed --tables DIR --out DIR`",
                ));
            }
            to_matrix(rows, &path)
        })
        .collect()
}

pub fn to_matrix(rows: Vec<Vec<f32>>, path: &Path) -> Result<Array2<f32>> {
    let dim = rows.first().map_or(0, Vec::len);
    if rows.iter().any(|row| row.len() != dim) {
        return Err(Error::table(path, "embeddings of different sizes"));
    }
    let n = rows.len();
    Array2::from_shape_vec((n, dim), rows.into_iter().flatten().collect()).map_err(|error| Error::Table {
        path: path.to_path_buf(),
        message: format!("embeddings of uneven length ({error})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_sums_equal_the_plain_squared_distance() {
        use linfa_nn::distance::Distance as _;
        let a: Vec<f32> = (0..19).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..19).map(|i| (i as f32 * 0.11).cos()).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        let fast = SquaredL2.rdistance(ndarray::ArrayView1::from(&a), ndarray::ArrayView1::from(&b));
        assert!((plain - fast).abs() < 1e-5, "{plain} vs {fast}");
        // A strided view takes the plain path.
        let m = ndarray::Array2::from_shape_vec((19, 2), a.iter().flat_map(|&x| [x, 0.0]).collect()).unwrap();
        let strided = SquaredL2.rdistance(m.column(0), ndarray::ArrayView1::from(&b));
        assert!((plain - strided).abs() < 1e-5);
    }

    #[test]
    fn pca_finds_the_direction_of_largest_spread() {
        // Points along (3, 4)/5 with small noise in the orthogonal direction.
        let x = Array2::from_shape_fn((200, 2), |(i, j)| {
            let t = i as f32 - 100.0;
            let noise = if i % 2 == 0 { 0.1 } else { -0.1 };
            if j == 0 { 0.6 * t - 0.8 * noise } else { 0.8 * t + 0.6 * noise }
        });
        let (_, components) = pca(&x, 1).expect("PCA of a line");
        assert!((components[[0, 0]] - 0.6).abs() < 1e-4 && (components[[0, 1]] - 0.8).abs() < 1e-4, "{components}");
    }
}
