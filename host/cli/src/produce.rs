//! `sluice produce`: JSON lines from stdin or a file, in batches.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, bail};

use super::client::{Body, Client, enc};

pub async fn produce(
    c: &Client,
    topic: &str,
    file: Option<PathBuf>,
    batch: usize,
) -> anyhow::Result<()> {
    let (reader, bar): (Box<dyn BufRead>, Option<indicatif::ProgressBar>) = match &file {
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
            let bar = indicatif::ProgressBar::new(f.metadata()?.len());
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
                )
                .expect("template"),
            );
            (Box::new(std::io::BufReader::new(f)), Some(bar))
        }
        None => (Box::new(std::io::BufReader::new(std::io::stdin())), None),
    };
    let path = format!("/v1/topics/{}/events", enc(topic));
    let (mut sent, mut rejected, mut line_no) = (0u64, 0u64, 0u64);
    let mut chunk: Vec<(u64, String)> = Vec::with_capacity(batch);
    let mut lines = reader.lines();
    loop {
        let line = lines.next().transpose()?;
        if let Some(l) = &line {
            line_no += 1;
            if let Some(b) = &bar {
                b.inc(l.len() as u64 + 1);
            }
            if !l.trim().is_empty() {
                chunk.push((line_no, l.clone()));
            }
        }
        if chunk.len() >= batch || (line.is_none() && !chunk.is_empty()) {
            let body = chunk
                .iter()
                .map(|(_, l)| l.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            let v = c
                .call(reqwest::Method::POST, &path, Some(Body::NdJson(body)))
                .await?;
            for (r, (n, _)) in v["results"].as_array().into_iter().flatten().zip(&chunk) {
                if r.get("error_code").is_some() {
                    rejected += 1;
                    let msg = format!("line {n}: {}", r["message"].as_str().unwrap_or(""));
                    match &bar {
                        Some(b) => b.suspend(|| eprintln!("{msg}")),
                        None => eprintln!("{msg}"),
                    }
                } else {
                    sent += 1;
                }
            }
            if let Some(b) = &bar {
                b.set_message(format!("{sent} events"));
            }
            chunk.clear();
        }
        if line.is_none() {
            break;
        }
    }
    if let Some(b) = bar {
        b.finish();
    }
    eprintln!(
        "produced {sent} events to {topic}{}",
        if rejected > 0 {
            format!(", {rejected} rejected")
        } else {
            String::new()
        }
    );
    if rejected > 0 {
        bail!("{rejected} events were rejected");
    }
    Ok(())
}
