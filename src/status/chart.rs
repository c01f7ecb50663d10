//! The status page's chart of the last hours ([`History`], kept by the
//! daemon in `health.rs`): one inline SVG, drawn on the box, no script and
//! no external asset.
//!
//! Two panels share the time axis: the queue (events waiting, both lanes)
//! as a step line over a light area, and the deliveries of each sample
//! period as bars. Outages are shaded bands across both panels (Zenchef
//! red, Zenchef Pay orange), one band per run of samples in outage. The
//! legend, the `<title>` and the `<desc>` (a one-sentence summary for
//! screen readers) are in the page's language. Every element a test or a
//! script may look for has a class: `queue`, `delivered`, `outage-zenchef`,
//! `outage-pay` (bands carry `data-from` / `data-to`, UTC).

use chrono::{DateTime, Offset, TimeZone, Utc};

use super::page::{Lang, esc, t};
use crate::health::{History, Sample};

/// Width of the drawing (SVG user units; the page scales it to its width).
pub const WIDTH: f64 = 640.0;
/// Height of the drawing.
pub const HEIGHT: f64 = 250.0;
/// Left margin (y-axis labels).
const LEFT: f64 = 46.0;
/// Right margin.
const RIGHT: f64 = 10.0;
/// Baseline of the visible title.
const TITLE: f64 = 13.0;
/// Queue panel: top and height.
const QUEUE_TOP: f64 = 36.0;
const QUEUE_H: f64 = 88.0;
/// Deliveries panel: top and height.
const DELIVERED_TOP: f64 = 146.0;
const DELIVERED_H: f64 = 52.0;
/// Baseline of the time labels.
const TIME_LABELS: f64 = 214.0;
/// Baseline of the legend.
const LEGEND: f64 = 238.0;
/// The narrowest time span drawn, in samples (a box just started still
/// gets a readable chart).
const MIN_SPAN_SAMPLES: i64 = 10;

const ZENCHEF_BAND: &str = "#e05252";
const PAY_BAND: &str = "#f0a030";
const QUEUE_LINE: &str = "#2060c0";
const QUEUE_AREA: &str = "#cfe0f7";
const DELIVERED_BAR: &str = "#3a9a4a";

/// A duration for the chart's words: `6 h`, `1 h 30`, `6 min`, `45 s`.
pub fn span_text(s: i64) -> String {
    match s {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 3600 => format!("{} h {:02}", s / 3600, (s % 3600) / 60),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s if s >= 60 => format!("{} min {:02}", s / 60, s % 60),
        s => format!("{} s", s.max(0)),
    }
}

/// The unit of one sample period in "delivered per …": `minute`,
/// `seconde`, `5 min`, `10 s`.
fn per(sample_s: u64, lang: Lang) -> String {
    match sample_s {
        1 => t(lang, "seconde", "second").into(),
        60 => "minute".into(),
        3600 => t(lang, "heure", "hour").into(),
        n => span_text(n as i64),
    }
}

/// The smallest of 1, 2, 5 × 10ⁿ that is at least `v` (and at least 1).
fn nice_ceiling(v: i64) -> i64 {
    let mut base = 1i64;
    loop {
        for m in [1, 2, 5] {
            if base * m >= v {
                return base * m;
            }
        }
        base *= 10;
    }
}

/// A sample with its period parsed: `(start, end, sample)`, UTC seconds.
struct Period<'a> {
    from: i64,
    to: i64,
    s: &'a Sample,
}

/// Runs of consecutive periods for which `pick` holds, as `(from, to)`.
fn runs(periods: &[&Period], sample_s: i64, pick: impl Fn(&Sample) -> bool) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for p in periods.iter().filter(|p| pick(p.s)) {
        match out.last_mut() {
            // Contiguous (a sample may be taken a little late).
            Some(last) if p.from - last.1 <= sample_s / 2 => last.1 = p.to,
            _ => out.push((p.from, p.to)),
        }
    }
    out
}

fn utc(s: i64) -> String {
    DateTime::<Utc>::from_timestamp(s, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The chart of `h` ending at `now`, times shown in `tz`, words in `lang`;
/// the Zenchef Pay band is in the legend only when `pay` is enabled (or
/// was in an outage). An empty history gives a short sentence instead of
/// a chart.
pub fn render_chart(
    h: &History,
    tz: chrono_tz::Tz,
    now: DateTime<Utc>,
    lang: Lang,
    pay: bool,
) -> String {
    let sample_s = h.sample_s.max(1) as i64;
    let periods: Vec<Period> = h
        .samples
        .iter()
        .filter_map(|s| {
            let to = DateTime::parse_from_rfc3339(&s.at).ok()?.timestamp();
            Some(Period {
                from: to - sample_s,
                to,
                s,
            })
        })
        .collect();
    if periods.is_empty() {
        let every = span_text(sample_s);
        return format!(
            "<p id=\"history-empty\" class=\"muted\">{}</p>",
            esc(&match lang {
                Lang::Fr => format!(
                    "Pas encore d'historique : le boîtier prend une mesure toutes les {every}."
                ),
                Lang::En => format!("No history yet: the box takes one sample every {every}."),
            })
        );
    }
    let c = Chart::new(&periods, sample_s, tz, now);
    let zc_runs = runs(&c.visible, sample_s, |s| s.zenchef_outage);
    let pay_runs = runs(&c.visible, sample_s, |s| s.pay_outage);
    let mut svg = c.head(lang, &zc_runs, &pay_runs);
    c.bands(&mut svg, &zc_runs, &pay_runs);
    c.axes(&mut svg, lang);
    c.ticks(&mut svg);
    c.queue(&mut svg);
    c.bars(&mut svg);
    legend(&mut svg, lang, h.sample_s, pay || !pay_runs.is_empty());
    svg
}

/// The time axis and the scales of one chart, with the periods it shows.
struct Chart<'a> {
    /// The time axis, UTC seconds: from the oldest sample (at most the
    /// whole history) to now, at least [`MIN_SPAN_SAMPLES`] wide.
    start: i64,
    end: i64,
    sample_s: i64,
    tz: chrono_tz::Tz,
    /// The top of the queue's scale and of the deliveries' scale.
    q_max: i64,
    d_max: i64,
    /// The periods that end after `start`.
    visible: Vec<&'a Period<'a>>,
}

impl<'a> Chart<'a> {
    fn new(
        periods: &'a [Period<'a>],
        sample_s: i64,
        tz: chrono_tz::Tz,
        now: DateTime<Utc>,
    ) -> Self {
        let end = now.timestamp().max(periods.last().map_or(0, |p| p.to));
        let full = sample_s * crate::health::HISTORY_SAMPLES as i64;
        let first = periods.first().map_or(end, |p| p.from);
        let start = first.max(end - full).min(end - sample_s * MIN_SPAN_SAMPLES);
        let visible: Vec<&Period> = periods.iter().filter(|p| p.to > start).collect();
        Chart {
            start,
            end,
            sample_s,
            tz,
            q_max: nice_ceiling(visible.iter().map(|p| p.s.queued).max().unwrap_or(0)),
            d_max: nice_ceiling(visible.iter().map(|p| p.s.delivered).max().unwrap_or(0)),
            visible,
        }
    }

    /// The x of time `ts` (UTC seconds), clamped to the axis.
    fn x(&self, ts: i64) -> f64 {
        let span = (self.end - self.start).max(1) as f64;
        let plot_w = WIDTH - LEFT - RIGHT;
        LEFT + ((ts - self.start).clamp(0, self.end - self.start) as f64) / span * plot_w
    }

    /// The y of `v` events waiting.
    fn qy(&self, v: i64) -> f64 {
        QUEUE_TOP + QUEUE_H - (v.clamp(0, self.q_max) as f64) / self.q_max as f64 * QUEUE_H
    }

    /// The y of `v` deliveries in a period.
    fn dy(&self, v: i64) -> f64 {
        DELIVERED_TOP + DELIVERED_H
            - (v.clamp(0, self.d_max) as f64) / self.d_max as f64 * DELIVERED_H
    }

    /// Time `ts` (UTC seconds) on the restaurant's clock, with the seconds
    /// when a sample is shorter than a minute.
    fn clock(&self, ts: i64) -> String {
        self.tz
            .from_utc_datetime(
                &DateTime::<Utc>::from_timestamp(ts, 0)
                    .unwrap_or_default()
                    .naive_utc(),
            )
            .format(if self.sample_s < 60 {
                "%H:%M:%S"
            } else {
                "%H:%M"
            })
            .to_string()
    }

    /// The `<svg>` element opened, with its `<title>`, its `<desc>` and the
    /// visible title.
    fn head(&self, lang: Lang, zc_runs: &[(i64, i64)], pay_runs: &[(i64, i64)]) -> String {
        let span = span_text(self.end - self.start);
        let title = match lang {
            Lang::Fr => format!("Historique sur {span} : file d'attente, envois et coupures"),
            Lang::En => format!("The last {span}: queue, deliveries and outages"),
        };
        format!(
            "<svg id=\"history-chart\" xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" \
             aria-labelledby=\"history-title history-desc\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
             width=\"100%\" font-family=\"sans-serif\" font-size=\"11\">\n\
             <title id=\"history-title\">{}</title>\n<desc id=\"history-desc\">{}</desc>\n\
             <text x=\"0\" y=\"{TITLE}\" font-size=\"13\" font-weight=\"bold\" fill=\"#222\" \
             aria-hidden=\"true\">{}</text>\n",
            esc(&title),
            esc(&self.desc(lang, zc_runs, pay_runs)),
            esc(&title)
        )
    }

    /// The one-sentence summary for screen readers: the most waiting, the
    /// deliveries, the outages.
    fn desc(&self, lang: Lang, zc_runs: &[(i64, i64)], pay_runs: &[(i64, i64)]) -> String {
        let delivered: i64 = self.visible.iter().map(|p| p.s.delivered).sum();
        let most = self.visible.iter().map(|p| p.s.queued).max().unwrap_or(0);
        let bands = |r: &[(i64, i64)]| {
            r.iter()
                .map(|(a, b)| format!("{}–{}", self.clock(*a), self.clock(*b)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut d = match lang {
            Lang::Fr => format!("Au plus {most} événement(s) en attente ; {delivered} envoyé(s)."),
            Lang::En => format!("At most {most} event(s) waiting; {delivered} delivered."),
        };
        for (name, r) in [("Zenchef", zc_runs), ("Zenchef Pay", pay_runs)] {
            if !r.is_empty() {
                d.push_str(&match lang {
                    Lang::Fr => format!(" {name} injoignable : {}.", bands(r)),
                    Lang::En => format!(" {name} unreachable: {}.", bands(r)),
                });
            }
        }
        if zc_runs.is_empty() && pay_runs.is_empty() {
            d.push_str(t(lang, " Aucune coupure.", " No outage."));
        }
        d
    }

    /// Outage bands across both panels, behind everything.
    fn bands(&self, svg: &mut String, zc_runs: &[(i64, i64)], pay_runs: &[(i64, i64)]) {
        let band_top = QUEUE_TOP;
        let band_h = DELIVERED_TOP + DELIVERED_H - QUEUE_TOP;
        for (class, color, opacity, r) in [
            ("outage-zenchef", ZENCHEF_BAND, 0.22, zc_runs),
            ("outage-pay", PAY_BAND, 0.28, pay_runs),
        ] {
            for (a, b) in r {
                svg.push_str(&format!(
                    "<rect class=\"{class}\" data-from=\"{}\" data-to=\"{}\" x=\"{:.1}\" y=\"{band_top:.1}\" \
                     width=\"{:.1}\" height=\"{band_h:.1}\" fill=\"{color}\" fill-opacity=\"{opacity}\"/>\n",
                    utc(*a),
                    utc(*b),
                    self.x(*a),
                    (self.x(*b) - self.x(*a)).max(1.0)
                ));
            }
        }
    }

    /// The axes of both panels, with their scales and names.
    fn axes(&self, svg: &mut String, lang: Lang) {
        for (top, h, max, label) in [
            (
                QUEUE_TOP,
                QUEUE_H,
                self.q_max,
                t(lang, "en attente", "waiting"),
            ),
            (
                DELIVERED_TOP,
                DELIVERED_H,
                self.d_max,
                t(lang, "envoyés", "delivered"),
            ),
        ] {
            let bottom = top + h;
            svg.push_str(&format!(
                "<line x1=\"{LEFT}\" y1=\"{bottom:.1}\" x2=\"{:.1}\" y2=\"{bottom:.1}\" stroke=\"#888\"/>\n\
                 <line x1=\"{LEFT}\" y1=\"{top:.1}\" x2=\"{LEFT}\" y2=\"{bottom:.1}\" stroke=\"#888\"/>\n\
                 <line x1=\"{LEFT}\" y1=\"{top:.1}\" x2=\"{:.1}\" y2=\"{top:.1}\" stroke=\"#ddd\" stroke-dasharray=\"3 3\"/>\n\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{max}</text>\n\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">0</text>\n\
                 <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#777\" font-size=\"10\">{}</text>\n",
                WIDTH - RIGHT,
                WIDTH - RIGHT,
                LEFT - 4.0,
                top + 4.0,
                LEFT - 4.0,
                bottom,
                LEFT + 4.0,
                top - 4.0,
                esc(label),
            ));
        }
    }

    /// Time ticks: a round step giving at most 6 of them, on round local
    /// times; a label cut by an edge is left out (its tick stays).
    fn ticks(&self, svg: &mut String) {
        let (start, end) = (self.start, self.end);
        let step = [
            1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
        ]
        .into_iter()
        .find(|s| (end - start) / s <= 6)
        .unwrap_or(21600);
        let offset = self
            .tz
            .offset_from_utc_datetime(
                &DateTime::<Utc>::from_timestamp(start, 0)
                    .unwrap_or_default()
                    .naive_utc(),
            )
            .fix()
            .local_minus_utc() as i64;
        let mut tick = ((start + offset).div_euclid(step) + 1) * step - offset;
        while tick <= end {
            let tx = self.x(tick);
            svg.push_str(&format!(
                "<line x1=\"{tx:.1}\" y1=\"{:.1}\" x2=\"{tx:.1}\" y2=\"{:.1}\" stroke=\"#888\"/>\n",
                DELIVERED_TOP + DELIVERED_H,
                DELIVERED_TOP + DELIVERED_H + 4.0,
            ));
            let half = if self.sample_s < 60 { 24.0 } else { 16.0 };
            if tx - half >= 0.0 && tx + half <= WIDTH {
                svg.push_str(&format!(
                    "<text class=\"time\" x=\"{tx:.1}\" y=\"{TIME_LABELS}\" text-anchor=\"middle\" \
                     fill=\"#555\">{}</text>\n",
                    self.clock(tick)
                ));
            }
            tick += step;
        }
    }

    /// The queue: a step line over an area, one path per run of contiguous
    /// samples (a gap is a time the daemon did not run).
    fn queue(&self, svg: &mut String) {
        let mut queue_runs: Vec<Vec<&Period>> = Vec::new();
        for p in &self.visible {
            match queue_runs.last_mut() {
                Some(run)
                    if run
                        .last()
                        .is_some_and(|l| p.from - l.to <= self.sample_s / 2) =>
                {
                    run.push(p)
                }
                _ => queue_runs.push(vec![p]),
            }
        }
        let start = self.start;
        let base = self.qy(0);
        for run in &queue_runs {
            let mut line = String::new();
            for (i, p) in run.iter().enumerate() {
                let (a, b, y) = (self.x(p.from.max(start)), self.x(p.to), self.qy(p.s.queued));
                if i == 0 {
                    line.push_str(&format!("M{a:.1} {y:.1}"));
                } else {
                    line.push_str(&format!(" L{a:.1} {y:.1}"));
                }
                line.push_str(&format!(" L{b:.1} {y:.1}"));
            }
            let (first_x, last_x) = (
                self.x(run[0].from.max(start)),
                self.x(run.last().map_or(start, |p| p.to)),
            );
            svg.push_str(&format!(
                "<path class=\"queue-area\" d=\"{line} L{last_x:.1} {base:.1} L{first_x:.1} {base:.1} Z\" \
                 fill=\"{QUEUE_AREA}\" fill-opacity=\"0.7\"/>\n\
                 <path class=\"queue\" d=\"{line}\" fill=\"none\" stroke=\"{QUEUE_LINE}\" stroke-width=\"1.6\"/>\n"
            ));
        }
    }

    /// Deliveries: one bar per sample that delivered something.
    fn bars(&self, svg: &mut String) {
        for p in &self.visible {
            if p.s.delivered <= 0 {
                continue;
            }
            let (a, b) = (self.x(p.from.max(self.start)), self.x(p.to));
            let gap = if b - a > 3.0 { 0.5 } else { 0.0 };
            let y = self.dy(p.s.delivered);
            svg.push_str(&format!(
                "<rect class=\"delivered\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
                 fill=\"{DELIVERED_BAR}\"/>\n",
                a + gap,
                (b - a - 2.0 * gap).max(0.6),
                (DELIVERED_TOP + DELIVERED_H - y).max(0.0)
            ));
        }
    }
}

/// The legend (the Zenchef Pay band only when `pay`), then the end of the
/// `<svg>`.
fn legend(svg: &mut String, lang: Lang, sample_s: u64, pay: bool) {
    let mut items: Vec<(String, &str, bool)> = vec![
        (
            t(lang, "En attente d'envoi", "Waiting to be sent").to_string(),
            QUEUE_LINE,
            false,
        ),
        (
            match lang {
                Lang::Fr => format!("Envoyés par {}", per(sample_s, lang)),
                Lang::En => format!("Delivered per {}", per(sample_s, lang)),
            },
            DELIVERED_BAR,
            false,
        ),
        (
            t(lang, "Zenchef injoignable", "Zenchef unreachable").to_string(),
            ZENCHEF_BAND,
            true,
        ),
    ];
    if pay {
        items.push((
            t(lang, "Zenchef Pay injoignable", "Zenchef Pay unreachable").to_string(),
            PAY_BAND,
            true,
        ));
    }
    let mut lx = LEFT;
    svg.push_str("<g class=\"legend\">\n");
    for (label, color, band) in items {
        let opacity = if band { " fill-opacity=\"0.5\"" } else { "" };
        svg.push_str(&format!(
            "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"11\" height=\"11\" fill=\"{color}\"{opacity}/>\
             <text x=\"{:.1}\" y=\"{LEGEND}\">{}</text>\n",
            LEGEND - 9.5,
            lx + 15.0,
            esc(&label)
        ));
        lx += 15.0 + label.chars().count() as f64 * 6.0 + 16.0;
    }
    svg.push_str("</g>\n</svg>");
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `n` samples of `sample_s` ending at `now`: a Zenchef outage over
    /// samples 20..30 (the queue growing, nothing delivered), a Pay outage
    /// over 40..43.
    pub(crate) fn history(now: DateTime<Utc>, n: i64, sample_s: u64) -> History {
        let samples = (0..n)
            .map(|i| {
                let at = now - chrono::Duration::seconds((n - 1 - i) * sample_s as i64);
                Sample {
                    at: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    queued: if (20..30).contains(&i) {
                        (i - 19) * 3
                    } else {
                        0
                    },
                    delivered: if (20..30).contains(&i) { 0 } else { i % 7 },
                    zenchef_outage: (20..30).contains(&i),
                    pay_outage: (40..43).contains(&i),
                }
            })
            .collect();
        History { sample_s, samples }
    }

    /// Parses the SVG as XML and checks that every coordinate is a
    /// finite number.
    fn parse(svg: &str) -> roxmltree::Document<'_> {
        let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        for n in doc
            .descendants()
            .filter(|n| n.is_element() && n.tag_name().name() != "svg")
        {
            for a in n.attributes() {
                let numbers: Vec<&str> = match a.name() {
                    "x" | "y" | "x1" | "x2" | "y1" | "y2" | "width" | "height" => vec![a.value()],
                    "d" => a
                        .value()
                        .split(|c: char| c == ' ' || c.is_ascii_alphabetic())
                        .filter(|v| !v.is_empty())
                        .collect(),
                    _ => continue,
                };
                for v in numbers {
                    assert!(
                        v.parse::<f64>().is_ok_and(f64::is_finite),
                        "{}={v:?} in {svg}",
                        a.name()
                    );
                }
            }
        }
        assert!(!svg.contains("NaN"), "{svg}");
        doc
    }

    fn by_class<'a>(doc: &'a roxmltree::Document, class: &str) -> Vec<roxmltree::Node<'a, 'a>> {
        doc.descendants()
            .filter(|n| n.attribute("class") == Some(class))
            .collect()
    }

    #[test]
    fn the_chart_is_xml_with_bands_where_the_outages_were() {
        let now = Utc::now();
        let h = history(now, 60, 60);
        for lang in [Lang::Fr, Lang::En] {
            let svg = render_chart(&h, chrono_tz::Europe::Paris, now, lang, true);
            let doc = parse(&svg);
            let root = doc.root_element();
            assert_eq!(root.tag_name().name(), "svg");
            assert_eq!(root.attribute("role"), Some("img"));
            let title = doc
                .descendants()
                .find(|n| n.tag_name().name() == "title")
                .and_then(|n| n.text())
                .unwrap();
            // 60 one-minute samples: the last hour.
            assert_eq!(
                title,
                match lang {
                    Lang::Fr => "Historique sur 1 h : file d'attente, envois et coupures",
                    Lang::En => "The last 1 h: queue, deliveries and outages",
                }
            );
            // One Zenchef band over samples 20..30, one Pay band over 40..43.
            let zc = by_class(&doc, "outage-zenchef");
            assert_eq!(zc.len(), 1, "{svg}");
            let at = |i: i64| {
                (now - chrono::Duration::seconds((59 - i) * 60))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            };
            assert_eq!(zc[0].attribute("data-from"), Some(at(19).as_str()));
            assert_eq!(zc[0].attribute("data-to"), Some(at(29).as_str()));
            let pay = by_class(&doc, "outage-pay");
            assert_eq!(pay.len(), 1, "{svg}");
            assert_eq!(pay[0].attribute("data-from"), Some(at(39).as_str()));
            // The band is a sixth of the plot (10 of 60 minutes).
            let w: f64 = zc[0].attribute("width").unwrap().parse().unwrap();
            let plot = WIDTH - LEFT - RIGHT;
            assert!((w - plot / 6.0).abs() < 1.0, "{w} vs {}", plot / 6.0);
            // Bars only where something was delivered, none in the outage.
            let bars = by_class(&doc, "delivered");
            let want = (0..60)
                .filter(|i| !(20..30).contains(i) && i % 7 != 0)
                .count();
            assert_eq!(bars.len(), want);
            assert_eq!(by_class(&doc, "queue").len(), 1, "one contiguous run");
            let times = by_class(&doc, "time");
            assert!(times.len() >= 3, "{svg}");
            for t in times {
                let x: f64 = t.attribute("x").unwrap().parse().unwrap();
                assert!(
                    (16.0..=WIDTH - 16.0).contains(&x),
                    "a label off the edge: {svg}"
                );
            }
            let legend: Vec<&str> = doc
                .descendants()
                .filter(|n| n.tag_name().name() == "text")
                .filter_map(|n| n.text())
                .collect();
            let words = match lang {
                Lang::Fr => [
                    "En attente d'envoi",
                    "Envoyés par minute",
                    "Zenchef injoignable",
                    "Zenchef Pay injoignable",
                ],
                Lang::En => [
                    "Waiting to be sent",
                    "Delivered per minute",
                    "Zenchef unreachable",
                    "Zenchef Pay unreachable",
                ],
            };
            for w in words {
                assert!(legend.contains(&w), "{w} not in {legend:?}");
            }
            // The queue's scale: 30 waiting at most → a top of 50.
            assert!(legend.contains(&"50"), "{legend:?}");
        }
    }

    #[test]
    fn gaps_split_the_queue_and_no_value_is_nan() {
        let now = Utc::now();
        let mut h = history(now, 30, 1);
        // The daemon was stopped for 10 s in the middle.
        h.samples.drain(10..20);
        let svg = render_chart(&h, chrono_tz::Europe::Paris, now, Lang::En, false);
        let doc = parse(&svg);
        assert_eq!(by_class(&doc, "queue").len(), 2, "{svg}");
        assert!(!svg.contains("Zenchef Pay unreachable"), "Pay is off");
        assert!(svg.contains("Delivered per second"), "{svg}");
        // Nothing at all, one sample, all zeros: still valid, finite.
        for n in [1, 2] {
            let mut h = history(now, n, 60);
            for s in &mut h.samples {
                s.queued = 0;
                s.delivered = 0;
            }
            let svg = render_chart(&h, chrono_tz::Europe::Paris, now, Lang::Fr, true);
            parse(&svg);
            assert!(svg.contains("Aucune coupure."), "{svg}");
        }
        let empty = render_chart(
            &History {
                sample_s: 60,
                samples: vec![],
            },
            chrono_tz::Europe::Paris,
            now,
            Lang::Fr,
            true,
        );
        assert!(empty.contains("Pas encore d&#39;historique"), "{empty}");
        assert!(!empty.contains("<svg"));
    }

    #[test]
    fn spans_and_scales_read_round() {
        assert_eq!(span_text(21600), "6 h");
        assert_eq!(span_text(5400), "1 h 30");
        assert_eq!(span_text(360), "6 min");
        assert_eq!(span_text(45), "45 s");
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(3), 5);
        assert_eq!(nice_ceiling(30), 50);
        assert_eq!(nice_ceiling(101), 200);
    }
}
