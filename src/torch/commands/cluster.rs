//! `routerdc cluster` on the libtorch side: embed (or read the embeddings), then the library's
//! k-means and outputs.

use std::time::Instant;

use routerdc::error::{Error, Result};
use routerdc::stages::cluster::{self, ClusterConfig};

use super::embed::embed_tables;

pub fn run_cluster(config: &ClusterConfig, quiet: bool) -> Result<()> {
    let tables = routerdc::io::read_tables(&config.tables)?;
    let vectors = match &config.embeddings {
        Some(dir) => cluster::read_vectors(dir, &tables)?,
        None => {
            let (vectors, dim, _, _) = embed_tables(&tables, &config.encoder, quiet)?;
            vectors
                .into_iter()
                .zip(&tables)
                .map(|(flat, loaded)| {
                    ndarray::Array2::from_shape_vec((loaded.table.n_queries(), dim), flat)
                        .map_err(|source| Error::failed("Failed to shape the embeddings", source))
                })
                .collect::<Result<_>>()?
        }
    };
    let started = Instant::now();
    let clustering = cluster::cluster(config, &tables, &vectors)?;
    let seconds = started.elapsed().as_secs_f64();
    let written = cluster::write_outputs(config, &tables, &clustering)?;
    print!("{}", cluster::report_markdown(&tables, &clustering, config.k));
    if !quiet {
        eprintln!("k-means: {} rows, k = {}, {seconds:.2} s", clustering.fitted_rows, config.k);
        for path in written {
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}
