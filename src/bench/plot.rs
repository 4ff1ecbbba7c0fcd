//! Latency over time for tools and people: an HdrHistogram interval log, a terminal chart
//! and an SVG image, all from the per-second record of a [`Report`].

use std::fmt::Write as _;

use base64::Engine as _;
use hdrhistogram::serialization::{Serializer as _, V2DeflateSerializer};

use crate::bench::Report;
use crate::bench::timeline::Interval;

/// Rows of the terminal chart at most; longer runs put several seconds in a row.
const CHART_ROWS: usize = 20;
/// Characters of the longest bar.
const BAR_WIDTH: usize = 40;

/// Writes `intervals` (one per second) in the HdrHistogram interval log format (V2
/// compressed histograms, base64), as HdrHistogram's `HistogramLogProcessor` and
/// HdrHistogramVisualizer read it.
pub(crate) fn write_hdr_log(
    out: &mut dyn std::io::Write,
    name: &str,
    started: std::time::SystemTime,
    intervals: &[Interval],
) -> std::io::Result<()> {
    let epoch = started
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    writeln!(out, "#[Logged with sockit bench: {name}]")?;
    writeln!(out, "#[Histogram log format version 1.3]")?;
    writeln!(out, "#[StartTime: {epoch:.3} (seconds since epoch)]")?;
    writeln!(
        out,
        "#[Values in microseconds, timed from when each operation was due; Interval_Max in milliseconds]"
    )?;
    writeln!(
        out,
        "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
    )?;
    let mut serializer = V2DeflateSerializer::new();
    let mut bytes = Vec::new();
    for (second, interval) in intervals.iter().enumerate() {
        let histogram = interval.corrected.histogram();
        bytes.clear();
        serializer
            .serialize(&histogram, &mut bytes)
            .map_err(|e| std::io::Error::other(format!("encoding a histogram: {e:?}")))?;
        writeln!(
            out,
            "{second}.000,1.000,{:.3},{}",
            histogram.max() as f64 / 1000.0,
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        )?;
    }
    Ok(())
}

/// A few lines of bars: the 99th percentile over time, several seconds per row when the run
/// was long (the row shows their worst).
pub(crate) fn chart(report: &Report) -> String {
    let seconds = &report.timeline;
    let per_row = seconds.len().div_ceil(CHART_ROWS).max(1);
    let rows: Vec<(u64, f64)> = seconds
        .chunks(per_row)
        .map(|chunk| {
            let worst = chunk.iter().map(|s| s.p99_ms).fold(0.0, f64::max);
            (chunk[0].second, worst)
        })
        .collect();
    let top = rows.iter().map(|r| r.1).fold(0.0, f64::max);
    let mut s = String::new();
    let kind = if report.schedule.is_some() {
        "from due time"
    } else {
        "from send time"
    };
    let _ = writeln!(s, "  p99 per {per_row} s ({kind}):");
    for (second, p99) in rows {
        let cells = if top > 0.0 {
            ((p99 / top) * BAR_WIDTH as f64).round() as usize
        } else {
            0
        };
        let _ = writeln!(
            s,
            "  {second:>6} s  {:<width$}  {p99:.3} ms",
            "█".repeat(cells.max(1)),
            width = BAR_WIDTH
        );
    }
    s
}

/// Latency over time as a self-contained SVG: p50, p99 and max per second (from the due
/// time in an open loop), and the uncorrected p99 dashed for comparison.
pub(crate) fn svg(report: &Report) -> String {
    let (width, height) = (760.0, 380.0);
    let (left, right, top, bottom) = (70.0, 20.0, 40.0, 50.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let seconds = &report.timeline;
    let span = seconds.len().max(1) as f64;
    let y_top = nice_ceiling(seconds.iter().map(|s| s.max_ms).fold(0.0, f64::max));
    let x = |second: f64| left + (second + 0.5) / span * plot_w;
    let y = |ms: f64| top + plot_h - (ms / y_top).min(1.0) * plot_h;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{left}" y="22" font-size="14">{}</text>"#,
        escape(&report.name)
    );
    for tick in 0..=5 {
        let ms = y_top * f64::from(tick) / 5.0;
        let ty = y(ms);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{ty:.1}" y2="{ty:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + plot_w,
            left - 6.0,
            ty + 4.0,
            format_ms(ms)
        );
    }
    let step = (seconds.len() / 10).max(1);
    for second in (0..seconds.len()).step_by(step) {
        let tx = x(second as f64);
        let _ = writeln!(
            s,
            r#"<text x="{tx:.1}" y="{:.1}" text-anchor="middle">{second}</text>"#,
            top + plot_h + 16.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds</text><text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">latency (ms)</text>"#,
        left + plot_w / 2.0,
        height - 10.0,
        top + plot_h / 2.0,
        top + plot_h / 2.0
    );
    let series: [(&str, &str, &str, Vec<Option<f64>>); 4] = [
        (
            "max",
            "#f4a582",
            "",
            seconds.iter().map(|s| Some(s.max_ms)).collect(),
        ),
        (
            "p99",
            "#ca0020",
            "",
            seconds.iter().map(|s| Some(s.p99_ms)).collect(),
        ),
        (
            "p50",
            "#0571b0",
            "",
            seconds.iter().map(|s| Some(s.p50_ms)).collect(),
        ),
        (
            "p99 uncorrected",
            "#555",
            r#" stroke-dasharray="5 4""#,
            seconds.iter().map(|s| s.uncorrected_p99_ms).collect(),
        ),
    ];
    let mut legend_x = left;
    for (label, colour, dash, values) in series {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i as f64), y(v))))
            .collect();
        if points.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{}"/>"#,
            points.join(" ")
        );
        let _ = writeln!(
            s,
            r#"<line x1="{legend_x}" x2="{}" y1="{}" y2="{}" stroke="{colour}" stroke-width="2"{dash}/><text x="{}" y="{}">{label}</text>"#,
            legend_x + 18.0,
            top - 8.0,
            top - 8.0,
            legend_x + 22.0,
            top - 4.0
        );
        legend_x += 40.0 + 7.0 * label.len() as f64;
    }
    s.push_str("</svg>\n");
    s
}

/// 1, 2 or 5 times a power of ten, at least `ms` (and above zero).
fn nice_ceiling(ms: f64) -> f64 {
    let ms = ms.max(0.001);
    let power = 10f64.powf(ms.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|&v| v >= ms)
        .unwrap_or(10.0 * power)
}

fn format_ms(ms: f64) -> String {
    if ms >= 10.0 || ms == 0.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::timeline::Timeline;
    use std::time::Duration;

    #[test]
    fn interval_log_has_the_header_and_one_decodable_line_per_second() {
        let mut intervals = vec![Interval::default(), Interval::default()];
        intervals[0].corrected.record(Duration::from_millis(2));
        intervals[1].corrected.record(Duration::from_millis(900));
        let mut out = Vec::new();
        write_hdr_log(&mut out, "t", std::time::UNIX_EPOCH, &intervals).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("#[StartTime: 0.000 (seconds since epoch)]"),
            "{text}"
        );
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines[0],
            r#""StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram""#
        );
        assert_eq!(lines.len(), 3);
        let fields: Vec<&str> = lines[2].split(',').collect();
        assert_eq!(&fields[..2], ["1.000", "1.000"]);
        assert!((fields[2].parse::<f64>().unwrap() - 900.0).abs() < 1.0);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(fields[3])
            .unwrap();
        let histogram: hdrhistogram::Histogram<u64> =
            hdrhistogram::serialization::Deserializer::new()
                .deserialize(&mut &bytes[..])
                .unwrap();
        assert_eq!(histogram.len(), 1);
        assert!(histogram.equivalent(histogram.max(), 900_000));
    }

    #[tokio::test(start_paused = true)]
    async fn chart_and_svg_show_every_second() {
        let start = tokio::time::Instant::now();
        let timeline = Timeline::new(start, false);
        let mut recorder = crate::bench::timeline::Recorder::new(timeline.clone());
        for ms in [5, 900, 5] {
            let sent = tokio::time::Instant::now();
            tokio::time::sleep(Duration::from_millis(ms)).await;
            recorder.done(sent, sent);
            tokio::time::sleep(Duration::from_millis(1000 - ms)).await;
        }
        drop(recorder);
        let report = Report::new("a <run>", Duration::from_secs(3), 3, 0, None)
            .with_timeline(&timeline, None);
        let chart = chart(&report);
        assert_eq!(chart.lines().count(), 4, "{chart}");
        assert!(chart.contains(&"█".repeat(BAR_WIDTH)), "{chart}");
        let svg = svg(&report);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a &lt;run&gt;"));
        assert_eq!(
            svg.matches("<polyline").count(),
            3,
            "no uncorrected line when closed"
        );
    }
}
