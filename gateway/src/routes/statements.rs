//! Account statements: `GET /v1/statements?from=&to=&format=csv|pdf`, the
//! caller's transactions over whole UTC days with, per currency, the opening
//! balance, every line with its running balance, and the closing balance.
//!
//! A statement is built from the same history rows as `GET /v1/transactions`,
//! each counted by what it did to the **available** balance as it stands now: a
//! deposit adds its net, a transfer out takes amount and fee unless it was
//! reversed, a withdrawal takes its amount (held, then paid out) unless it failed,
//! a transfer in adds its amount. The opening balance is the sum of every line
//! before the period, so a period's closing balance is the next period's opening
//! one, and a statement that ends today closes on the account's available
//! balance (tested). Work is bounded: at most [`ROWS_MAX`] rows are read; an
//! account with more before the period's end gets 422 `STATEMENT_TOO_LARGE`.
//!
//! The PDF is written with `pdf-writer` in the standard Helvetica font (no font
//! is embedded, so characters outside Latin-1 print as `?`; the CSV keeps them).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use okpay_engine::domain::history::TxRecord;
use okpay_engine::domain::notification::{Direction, TxStatus};
use okpay_engine::ids::{AccountId, OpKind};
use okpay_engine::money::Currency;
use pdf_writer::{Content, Finish as _, Name, Pdf, Rect, Ref, Str};
use rust_decimal::Decimal;
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::routes::extract::{money, time};
use crate::state::AppState;

/// The longest period, in days.
const DAYS_MAX: i64 = 366;
/// The most history rows one statement reads (before and within the period).
pub const ROWS_MAX: usize = 20_000;
/// Rows per engine history call.
const PAGE: usize = 200;

/// `csv` or `pdf`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatementFormat {
    #[default]
    Csv,
    Pdf,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatementQuery {
    /// The first day (UTC) of the period.
    #[param(example = "2026-11-01")]
    pub from: NaiveDate,
    /// The last day (UTC) of the period, at most 366 days after `from`.
    #[param(example = "2026-11-30")]
    pub to: NaiveDate,
    /// `csv` (default) or `pdf`.
    #[param(inline)]
    pub format: Option<StatementFormat>,
}

/// What a line did to the available balance.
pub fn net_effect(r: &TxRecord) -> Decimal {
    match (r.kind, r.direction, r.status) {
        (_, _, TxStatus::Failed | TxStatus::Reversed) => Decimal::ZERO,
        (OpKind::Deposit, _, _) => r.amount - r.fee,
        (OpKind::Withdrawal, _, _) => -r.amount,
        (_, Direction::Out, _) => -(r.amount + r.fee),
        (_, Direction::In, _) => r.amount,
    }
}

/// One currency's part of a statement.
#[derive(Debug, Default)]
pub struct Section {
    pub opening: Decimal,
    pub credits: Decimal,
    pub debits: Decimal,
    /// Oldest first, each with the balance after it.
    pub lines: Vec<(TxRecord, Decimal)>,
}

impl Section {
    pub fn closing(&self) -> Decimal {
        self.opening + self.credits - self.debits
    }
}

/// A statement: sections by currency code.
#[derive(Debug)]
pub struct Statement {
    pub account: AccountId,
    pub display_name: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub sections: BTreeMap<String, (Currency, Section)>,
}

/// The start of `day` (UTC) in milliseconds.
fn day_start_ms(day: NaiveDate) -> i64 {
    day.and_time(NaiveTime::MIN).and_utc().timestamp_millis()
}

/// Reads every row created before the end of `to`, newest first, bounded.
async fn rows_until(state: &AppState, account: AccountId, end_ms: i64) -> ApiResult<Vec<TxRecord>> {
    let mut rows = Vec::new();
    // Row keys start with the creation time in hex: this cursor starts the scan
    // just before `end_ms`.
    let mut cursor = Some(format!("{:016x}", end_ms.max(0)));
    loop {
        let (page, next) = state.engine.history(account, cursor, PAGE, None).await?;
        rows.extend(page);
        if rows.len() > ROWS_MAX {
            return Err(ApiError::new(
                ErrorCode::StatementTooLarge,
                format!("This statement would read more than {ROWS_MAX} operations."),
            ));
        }
        match next {
            Some(n) => cursor = Some(n),
            None => return Ok(rows),
        }
    }
}

/// Builds the statement of `account` for the days `from..=to`.
pub async fn build(
    state: &AppState,
    account: AccountId,
    from: NaiveDate,
    to: NaiveDate,
) -> ApiResult<Statement> {
    let start = day_start_ms(from);
    let end = day_start_ms(to + chrono::Days::new(1));
    let display_name = state
        .engine
        .read(account, |s, _, _| s.profile.display_name.clone())
        .await?;
    let mut rows = rows_until(state, account, end).await?;
    rows.reverse();
    let mut sections: BTreeMap<String, (Currency, Section)> = BTreeMap::new();
    for r in rows {
        let (_, s) = sections
            .entry(r.currency.code().to_owned())
            .or_insert_with(|| (r.currency, Section::default()));
        let effect = net_effect(&r);
        if r.created_at.millis() < start {
            s.opening += effect;
            continue;
        }
        if effect >= Decimal::ZERO {
            s.credits += effect;
        } else {
            s.debits -= effect;
        }
        let balance = s.closing();
        s.lines.push((r, balance));
    }
    Ok(Statement {
        account,
        display_name,
        from,
        to,
        sections,
    })
}

/// What a line is, in words.
fn describe(r: &TxRecord) -> String {
    let what = match (r.kind, r.direction) {
        (OpKind::Deposit, _) => "Deposit".to_owned(),
        (OpKind::Withdrawal, _) => "Withdrawal".to_owned(),
        (_, Direction::Out) => format!(
            "Transfer to {}",
            r.counterparty.map(|a| a.to_string()).unwrap_or_default()
        ),
        (_, Direction::In) => format!(
            "Transfer from {}",
            r.counterparty.map(|a| a.to_string()).unwrap_or_default()
        ),
    };
    match r.status {
        TxStatus::Completed => what,
        other => format!("{what} ({})", other.name()),
    }
}

/// A CSV field, quoted when it needs to be (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// The statement as CSV: one row per line, framed per currency by an `opening`
/// and a `closing` row carrying the balances.
pub fn csv(st: &Statement) -> String {
    let mut out = String::from(
        "date,id,type,direction,status,currency,amount,fee,net,balance,counterparty,memo\n",
    );
    for (code, (currency, s)) in &st.sections {
        let m = |v: Decimal| money(v, *currency);
        let _ = writeln!(out, "{},,opening,,,{code},,,,{},,", st.from, m(s.opening));
        for (r, balance) in &s.lines {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{code},{},{},{},{},{},{}",
                time(r.created_at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                r.public_id(),
                match r.kind {
                    OpKind::Deposit => "deposit",
                    OpKind::Withdrawal => "withdrawal",
                    _ => "transfer",
                },
                match r.direction {
                    Direction::In => "in",
                    Direction::Out => "out",
                },
                r.status.name(),
                m(r.amount),
                m(r.fee),
                m(net_effect(r)),
                m(*balance),
                r.counterparty.map(|a| a.to_string()).unwrap_or_default(),
                csv_field(r.memo.as_deref().unwrap_or("")),
            );
        }
        let _ = writeln!(out, "{},,closing,,,{code},,,,{},,", st.to, m(s.closing()));
    }
    out
}

/// Latin-1 text for the standard PDF font; anything else prints as `?`.
fn latin1(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}

/// The statement as a PDF (A4, Helvetica, as many pages as the lines need).
pub fn pdf(st: &Statement, generated_at: DateTime<Utc>) -> Vec<u8> {
    const LINES_PER_PAGE: usize = 52;
    let mut text: Vec<(f32, String)> = vec![
        (14.0, "OKPay account statement".into()),
        (
            10.0,
            format!("Account: {} ({})", st.account, st.display_name),
        ),
        (10.0, format!("Period: {} to {} (UTC)", st.from, st.to)),
        (
            10.0,
            format!("Generated: {}", generated_at.format("%Y-%m-%d %H:%M UTC")),
        ),
        (10.0, String::new()),
    ];
    if st.sections.is_empty() {
        text.push((10.0, "No transactions.".into()));
    }
    for (code, (currency, s)) in &st.sections {
        let m = |v: Decimal| money(v, *currency);
        text.push((12.0, code.clone()));
        text.push((10.0, format!("Opening balance: {} {code}", m(s.opening))));
        text.push((
            10.0,
            format!(
                "Money in: {} {code}   Money out: {} {code}",
                m(s.credits),
                m(s.debits)
            ),
        ));
        text.push((10.0, format!("Closing balance: {} {code}", m(s.closing()))));
        text.push((9.0, "Date                 Id                                   Description                                  Amount        Balance".into()));
        for (r, balance) in &s.lines {
            text.push((
                9.0,
                format!(
                    "{}  {}  {:<40}  {:>12}  {:>12}",
                    time(r.created_at).format("%Y-%m-%d %H:%M"),
                    r.public_id(),
                    describe(r),
                    m(net_effect(r)),
                    m(*balance)
                ),
            ));
        }
        text.push((10.0, String::new()));
    }
    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let font = Ref::new(3);
    let chunks: Vec<&[(f32, String)]> = text.chunks(LINES_PER_PAGE).collect();
    let page_ids: Vec<Ref> = (0..chunks.len())
        .map(|i| Ref::new(4 + 2 * i as i32))
        .collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(page_ids.len() as i32);
    pdf.type1_font(font)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    for (i, chunk) in chunks.iter().enumerate() {
        let page_id = page_ids[i];
        let content_id = Ref::new(page_id.get() + 1);
        let mut page = pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, 595.0, 842.0));
        page.parent(tree);
        page.contents(content_id);
        page.resources().fonts().pair(Name(b"F1"), font);
        page.finish();
        let mut content = Content::new();
        content.begin_text();
        content.next_line(40.0, 800.0);
        for (size, line) in chunk.iter() {
            content.set_font(Name(b"F1"), *size);
            content.show(Str(&latin1(line)));
            content.next_line(0.0, -(size + 5.0));
        }
        content.end_text();
        pdf.stream(content_id, &content.finish());
    }
    pdf.finish()
}

/// The caller's statement for whole UTC days, as CSV or PDF.
#[utoipa::path(get, path = "/v1/statements", tag = "transactions", security(("bearer" = [])),
    params(StatementQuery),
    responses(
        (status = 200, description = "The statement: CSV (one row per line, with opening and closing rows per currency) or PDF",
            content(
                (String = "text/csv", example = "date,id,type,direction,status,currency,amount,fee,net,balance,counterparty,memo\n2026-11-01,,opening,,,CNY,,,,0.00,,\n2026-11-29T08:00:00.000Z,dep_0123456789abcdef0000000000000001,deposit,in,completed,CNY,100.00,0.00,100.00,100.00,,\n2026-11-30,,closing,,,CNY,,,,100.00,,\n"),
                (Vec<u8> = "application/pdf")
            )),
        (status = 400, body = Problem, description = "A missing or malformed date, or an unknown format."),
        (status = 422, body = Problem, description = "to before from, a period over 366 days, or more operations than one statement reads."),
    ))]
#[get("/v1/statements")]
pub async fn statement(
    state: web::Data<AppState>,
    auth: Auth,
    query: web::Query<StatementQuery>,
) -> ApiResult<HttpResponse> {
    let q = query.into_inner();
    if q.to < q.from {
        return Err(ApiError::new(
            ErrorCode::InvalidPeriod,
            "to must not be before from.",
        ));
    }
    if (q.to - q.from).num_days() >= DAYS_MAX {
        return Err(ApiError::new(
            ErrorCode::InvalidPeriod,
            format!("A statement covers at most {DAYS_MAX} days."),
        ));
    }
    let st = build(&state, auth.account, q.from, q.to).await?;
    let name = format!("okpay-statement-{}-{}-{}", st.account, st.from, st.to);
    Ok(match q.format.unwrap_or_default() {
        StatementFormat::Csv => HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((
                "Content-Disposition",
                format!("attachment; filename=\"{name}.csv\""),
            ))
            .body(csv(&st)),
        StatementFormat::Pdf => HttpResponse::Ok()
            .content_type("application/pdf")
            .insert_header((
                "Content-Disposition",
                format!("attachment; filename=\"{name}.pdf\""),
            ))
            .body(pdf(&st, state.now())),
    })
}

#[derive(OpenApi)]
#[openapi(paths(statement), components(schemas(StatementFormat)))]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(statement);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("lunch"), "lunch");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn text_outside_latin1_prints_as_a_question_mark() {
        assert_eq!(latin1("Zoë 王"), b"Zo\xeb ?".to_vec());
    }
}
