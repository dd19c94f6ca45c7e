//! `[[subject]]` in rule files: the kinds of person an erasure request may
//! name, the identifiers a request names them by, where their rows live and
//! what erasure means in each table. Validated like rules, every problem
//! collected with its file and line.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use toml::Spanned;

use super::parse::{Diagnosed, is_simple_name, parse_table};
use super::raw::{RawSubject, RawSubjectTable};
use super::source::Source;
use super::validate::{RelatedKind, related_tables};
use super::{
    Action, Cascade, Category, Location, Rule, Settings, StoreConfig, TableRef, check_identifier,
};
use crate::period::{Period, PeriodKind, Unit};
use crate::pseudonym::ColumnAction;

/// A kind of person a request may name (`[[subject]]`).
#[derive(Debug, Clone)]
pub struct Subject {
    pub kind: String,
    pub description: Option<String>,
    /// The identifiers a request may give, e.g. `email`, `customer_no`.
    pub identifiers: Vec<String>,
    /// How long after it is received a request must be done.
    pub deadline: Period,
    /// Identifiers whose values, found in the person's row of the table
    /// authoritative for them, find further rows (the customer number in
    /// the customer's row).
    pub follow: Vec<String>,
    /// How each identifier's values are compared; `lower` where not named.
    pub normalise: Vec<(String, Normalise)>,
    pub tables: Vec<SubjectTable>,
    pub at: Location,
}

/// How an identifier's value is compared: the request's and every
/// column's value alike, before they are hashed. Both trim blanks around
/// the value and bring it to Unicode NFC (`é` typed as `e` and a combining
/// accent is the same letter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalise {
    /// In lower case too: `Jens@Example.invalid` is `jens@example.invalid`.
    Lower,
    /// Case kept: codes where `AB12` and `ab12` are different people.
    Exact,
}

impl Normalise {
    fn parse(text: &str) -> Option<Normalise> {
        match text {
            "lower" => Some(Normalise::Lower),
            "exact" => Some(Normalise::Exact),
            _ => None,
        }
    }

    /// The text a value is compared (and hashed) by.
    pub fn apply(self, value: &str) -> String {
        use unicode_normalization::UnicodeNormalization as _;
        let trimmed = value.trim();
        match self {
            Normalise::Lower => trimmed.to_lowercase().nfc().collect(),
            Normalise::Exact => trimmed.nfc().collect(),
        }
    }
}

/// A table holding a subject's rows (`[[subject.table]]`).
#[derive(Debug, Clone)]
pub struct SubjectTable {
    pub store: String,
    pub table: TableRef,
    /// `(identifier, column)`: a row is the subject's when the column holds
    /// the identifier a request gave.
    pub matches: Vec<(String, String)>,
    /// Delete the rows, or overwrite named columns (the row stays).
    pub action: Action,
    /// The minimum rule that keeps the rows until its period ends, and
    /// then deletes them.
    pub kept_by: Option<String>,
    /// A boolean column: rows where it is true (or NULL) are held.
    pub hold: Option<String>,
    /// Followed identifiers this table is the authority for: its row is
    /// one person, so follow learns their values here and nowhere else.
    pub authoritative: Vec<String>,
    /// Rows of other tables deleted with the subject's rows.
    pub cascades: Vec<Cascade>,
    pub at: Location,
}

impl Subject {
    /// Whether `identifier` is one of this subject's.
    pub fn names(&self, identifier: &str) -> bool {
        self.identifiers.iter().any(|i| i == identifier)
    }

    /// The subject's table `table` is declared as, if any (as written).
    fn declared(&self, store: &str, table: &TableRef) -> Option<&SubjectTable> {
        self.tables
            .iter()
            .find(|t| t.store == store && &t.table == table)
    }

    /// How `identifier`'s values are compared.
    pub fn normalise_of(&self, identifier: &str) -> Normalise {
        self.normalise
            .iter()
            .find(|(i, _)| i == identifier)
            .map_or(Normalise::Lower, |(_, n)| *n)
    }
}

impl SubjectTable {
    /// Whether erasure deletes the rows outright: not kept under a
    /// minimum, not held, not only overwritten.
    pub fn erasure_deletes(&self) -> bool {
        matches!(self.action, Action::Delete) && self.kept_by.is_none() && self.hold.is_none()
    }

    /// What erasure does to the rows of a table it does not simply
    /// delete ("whose rows erasure keeps while they are held").
    pub fn kept_meaning(&self) -> String {
        match (&self.kept_by, &self.hold) {
            (Some(rule), _) => format!("whose rows erasure keeps under the minimum of rule {rule}"),
            (None, Some(_)) => "whose rows erasure keeps while they are held".to_string(),
            (None, None) => format!("whose rows erasure {}s, not deletes", self.action.as_str()),
        }
    }
}

/// Why a declared cascade may not delete the rows of `table` (`named` as
/// it is shown), a table of subject `whose` whose rows erasure keeps: a
/// cascade deletes without looking at holds or minimums. Without the
/// subject's prefix.
pub fn cascade_into_kept(named: &str, whose: &Subject, table: &SubjectTable) -> String {
    format!(
        "cascade: {named} is also subject {}'s table {} (declared at {}), {}; the cascade would delete those rows without looking: remove the cascade into {named} and let that table's declaration erase them",
        whose.kind,
        table.table,
        table.at,
        table.kept_meaning()
    )
}

/// A declared cascade into a table of any subject whose rows erasure
/// keeps, for the tables as written here; `check` and the plan hold them
/// to the tables as the store resolves them.
fn check_cascades_into_kept(subjects: &[Subject], diags: &mut Diagnosed) {
    for subject in subjects {
        for table in &subject.tables {
            for cascade in &table.cascades {
                let child = &cascade.related.table;
                let kept = subjects.iter().find_map(|whose| {
                    whose
                        .declared(&table.store, child)
                        .filter(|t| !t.erasure_deletes())
                        .map(|t| (whose, t))
                });
                if let Some((whose, kept)) = kept {
                    let problem = cascade_into_kept(&child.to_string(), whose, kept);
                    diags.push(
                        cascade.related.at.clone(),
                        None,
                        format!("subject {}: table {}: {problem}", subject.kind, table.table),
                    );
                }
            }
        }
    }
}

/// What erasure may do to a column: NULL, fixed text or a keyed token. The
/// generalisations keep part of the value, which a request to erase does not.
fn erasure_column(action: ColumnAction) -> bool {
    matches!(
        action,
        ColumnAction::Null | ColumnAction::Redact | ColumnAction::Hmac | ColumnAction::HmacEmail
    )
}

/// Reads the `subject` array of one rule file.
pub(super) fn parse(
    source: &Rc<Source>,
    value: &toml::de::DeValue<'_>,
    at: Location,
    out: &mut Vec<(Rc<Source>, RawSubject)>,
    diags: &mut Diagnosed,
) {
    let toml::de::DeValue::Array(items) = value else {
        diags.push(
            at,
            None,
            "subjects are an array of tables: write [[subject]]",
        );
        return;
    };
    for item in items.iter() {
        match <RawSubject as serde::Deserialize>::deserialize(toml::de::ValueDeserializer::from(
            item.clone(),
        )) {
            Ok(raw) => out.push((source.clone(), raw)),
            Err(err) => diags.push(
                source.span_location(err.span().or(Some(item.span()))),
                None,
                format!("[[subject]]: {}", err.message()),
            ),
        }
    }
}

/// What subjects are checked against.
pub(super) struct SubjectContext<'a> {
    pub stores: &'a BTreeMap<String, StoreConfig>,
    pub categories: &'a BTreeMap<String, Category>,
    pub rules: &'a [Rule],
    pub settings: &'a Settings,
}

/// Validates every `[[subject]]`; the valid ones.
pub(super) fn validate(
    raw: &[(Rc<Source>, RawSubject)],
    ctx: &SubjectContext<'_>,
    diags: &mut Diagnosed,
) -> Vec<Subject> {
    let mut subjects: Vec<Subject> = Vec::new();
    let mut identifier_at: HashMap<String, (String, Location)> = HashMap::new();
    for (source, raw) in raw {
        if let Some(subject) = subject(source, raw, &subjects, &mut identifier_at, ctx, diags) {
            subjects.push(subject);
        }
    }
    if !raw.is_empty() {
        requirements(raw, ctx, diags);
    }
    check_cascades_into_kept(&subjects, diags);
    subjects
}

/// The names a subject's tables are checked against.
struct Scope<'a> {
    /// `subject <kind>`, the start of every message.
    what: &'a str,
    identifiers: &'a [String],
    follow: &'a [String],
}

/// One `[[subject]]`, or `None` (its problems reported) when invalid.
fn subject(
    source: &Rc<Source>,
    raw: &RawSubject,
    earlier: &[Subject],
    identifier_at: &mut HashMap<String, (String, Location)>,
    ctx: &SubjectContext<'_>,
    diags: &mut Diagnosed,
) -> Option<Subject> {
    let errors_before = diags.0.len();
    let at = source.span_location(Some(raw.kind.span()));
    let kind = raw.kind.get_ref().clone();
    let what = format!("subject {kind}");
    check_kind(&kind, &what, &at, earlier, diags);
    let identifiers = identifiers(source, raw, &what, identifier_at, diags);
    let follow = follow(source, raw, &what, &identifiers, diags);
    let normalise = normalise(source, raw, &what, &identifiers, diags);
    let deadline = deadline(source, &raw.deadline, &what, ctx, diags);
    let scope = Scope {
        what: &what,
        identifiers: &identifiers,
        follow: &follow,
    };
    let tables: Vec<SubjectTable> = raw
        .table
        .iter()
        .filter_map(|t| table(source, t, &scope, ctx, diags))
        .collect();
    if raw.table.is_empty() {
        diags.push(
            at.clone(),
            None,
            format!("{what}: no [[subject.table]]; say where the subject's rows are"),
        );
    }
    check_authorities(source, raw, &scope, diags);
    if diags.0.len() > errors_before {
        return None;
    }
    Some(Subject {
        kind,
        description: raw.description.clone(),
        identifiers,
        deadline: deadline.expect("no errors, so a deadline"),
        follow,
        normalise,
        tables,
        at,
    })
}

fn check_kind(kind: &str, what: &str, at: &Location, earlier: &[Subject], diags: &mut Diagnosed) {
    if !is_simple_name(kind) {
        diags.push(
            at.clone(),
            None,
            format!("{what}: kind may hold only letters, digits, '_' and '-'"),
        );
    }
    if let Some(first) = earlier.iter().find(|s| s.kind == kind) {
        diags.push(
            at.clone(),
            None,
            format!("{what} is declared twice; first at {}", first.at),
        );
    }
}

/// The subject's identifiers: simple names, none another subject's.
fn identifiers(
    source: &Source,
    raw: &RawSubject,
    what: &str,
    identifier_at: &mut HashMap<String, (String, Location)>,
    diags: &mut Diagnosed,
) -> Vec<String> {
    let kind = raw.kind.get_ref();
    let identifiers = raw.identifiers.get_ref().clone();
    let identifiers_at = source.span_location(Some(raw.identifiers.span()));
    if identifiers.is_empty() {
        diags.push(
            identifiers_at.clone(),
            None,
            format!("{what}: identifiers is empty; name at least one, e.g. [\"email\"]"),
        );
    }
    for identifier in identifiers.iter().filter(|i| !is_simple_name(i)) {
        diags.push(
            identifiers_at.clone(),
            None,
            format!("{what}: identifier {identifier:?} may hold only letters, digits, '_' and '-'"),
        );
    }
    for identifier in &identifiers {
        match identifier_at.get(identifier) {
            Some((other, first)) => diags.push(
                identifiers_at.clone(),
                None,
                format!("{what}: identifier {identifier:?} is also subject {other}'s (at {first}); a request names one subject by its identifier, so give it another name"),
            ),
            None => {
                identifier_at.insert(identifier.clone(), (kind.clone(), identifiers_at.clone()));
            }
        }
    }
    identifiers
}

/// The followed identifiers, each one of the subject's.
fn follow(
    source: &Source,
    raw: &RawSubject,
    what: &str,
    identifiers: &[String],
    diags: &mut Diagnosed,
) -> Vec<String> {
    let Some(spanned) = &raw.follow else {
        return Vec::new();
    };
    for name in spanned
        .get_ref()
        .iter()
        .filter(|f| !identifiers.contains(f))
    {
        diags.push(
            source.span_location(Some(spanned.span())),
            None,
            format!(
                "{what}: follow: {name:?} is not one of the subject's identifiers {identifiers:?}"
            ),
        );
    }
    spanned.get_ref().clone()
}

/// `normalise = { identifier = "lower" | "exact" }`, each one of the subject's.
fn normalise(
    source: &Source,
    raw: &RawSubject,
    what: &str,
    identifiers: &[String],
    diags: &mut Diagnosed,
) -> Vec<(String, Normalise)> {
    let Some(spanned) = &raw.normalise else {
        return Vec::new();
    };
    let at = source.span_location(Some(spanned.span()));
    let mut out = Vec::new();
    for (identifier, text) in spanned.get_ref() {
        if !identifiers.contains(identifier) {
            diags.push(at.clone(), None, format!("{what}: normalise: {identifier:?} is not one of the subject's identifiers {identifiers:?}"));
        }
        match Normalise::parse(text) {
            Some(n) => out.push((identifier.clone(), n)),
            None => diags.push(
                at.clone(),
                None,
                format!("{what}: normalise: {identifier} = {text:?}: use \"lower\" or \"exact\""),
            ),
        }
    }
    out
}

/// Every followed identifier is learnt from exactly one table, the one
/// whose row is the person: a value learnt anywhere else (a "GUEST"
/// customer number on an order, a company address on a contact) may be
/// several people's.
fn check_authorities(source: &Source, raw: &RawSubject, scope: &Scope<'_>, diags: &mut Diagnosed) {
    let what = scope.what;
    for identifier in scope.follow {
        let authorities: Vec<&Spanned<Vec<String>>> = raw
            .table
            .iter()
            .filter_map(|t| t.get_ref().authoritative.as_ref())
            .filter(|a| a.get_ref().contains(identifier))
            .collect();
        match authorities.as_slice() {
            [] => diags.push(
                source.span_location(raw.follow.as_ref().map(|f| f.span())),
                None,
                format!("{what}: follow: {identifier:?} has no authoritative table; add authoritative = [{identifier:?}] to the [[subject.table]] whose row is the person (one row per person), the only table it is learnt from"),
            ),
            [_] => {}
            [_, second, ..] => diags.push(
                source.span_location(Some(second.span())),
                None,
                format!("{what}: authoritative: {identifier:?} has an authoritative table already; name it in the one table whose row is the person"),
            ),
        }
    }
}

/// What a policy with subjects needs of `glemsel.toml`.
fn requirements(raw: &[(Rc<Source>, RawSubject)], ctx: &SubjectContext<'_>, diags: &mut Diagnosed) {
    let (source, first) = &raw[0];
    let at = source.span_location(Some(first.kind.span()));
    let settings = ctx.settings;
    if settings.key.is_none() {
        diags.push(at.clone(), None, "erasure requests need the key: identifiers are recorded only as keyed hashes; set key_file or key_credential in glemsel.toml");
    }
    match &settings.erasure_store {
        None => diags.push(at.clone(), None, "erasure requests need a ledger: set erasure_store (the store whose audit trail records them) in glemsel.toml"),
        Some(store) if !ctx.stores.contains_key(store) => diags.push(
            Location::file_start(&settings.config_file),
            None,
            format!("erasure_store {store:?} is not a configured store"),
        ),
        Some(_) => {}
    }
    if settings.erasure_ledger.is_none() {
        diags.push(at, None, "erasure requests need a ledger file outside the database, so a restore cannot take them back: set erasure_ledger in glemsel.toml");
    }
}

fn deadline(
    source: &Source,
    text: &Spanned<String>,
    what: &str,
    ctx: &SubjectContext<'_>,
    diags: &mut Diagnosed,
) -> Option<Period> {
    let at = source.span_location(Some(text.span()));
    match text.get_ref().parse::<Period>() {
        Ok(period) if period.unit == Unit::WorkingDays && ctx.settings.calendar.is_none() => {
            diags.push(at, None, format!("{what}: deadline counts working days: set holidays = \"DK\" or holidays = \"none\" in glemsel.toml"));
            None
        }
        Ok(period) => Some(period),
        Err(err) => {
            diags.push(at, None, format!("{what}: deadline: {err}"));
            None
        }
    }
}

fn table(
    source: &Source,
    spanned: &Spanned<RawSubjectTable>,
    scope: &Scope<'_>,
    ctx: &SubjectContext<'_>,
    diags: &mut Diagnosed,
) -> Option<SubjectTable> {
    let raw = spanned.get_ref();
    let errors_before = diags.0.len();
    let at = source.span_location(Some(raw.table.span()));
    let what = format!("{}: table {}", scope.what, raw.table.get_ref());
    let loc = |span: std::ops::Range<usize>| source.span_location(Some(span));
    let store = raw.store.get_ref().clone();
    if !ctx.stores.contains_key(&store) {
        diags.push(
            loc(raw.store.span()),
            None,
            format!("{what}: store {store:?} is not configured in glemsel.toml"),
        );
    }
    let table = parse_table(source, &raw.table, None, diags);
    let matches = matches(source, raw, &what, scope.identifiers, diags);
    let authoritative = authoritative(source, raw, &what, scope, diags);
    if let Some(hold) = &raw.hold
        && let Err(err) = check_identifier(hold.get_ref())
    {
        diags.push(loc(hold.span()), None, format!("{what}: hold: {err}"));
    }
    let action = action(source, raw, &what, diags);
    let cascades = cascades(source, raw, &at, &store, action.as_ref(), &what, ctx, diags);
    if let Some(table) = &table {
        check_rules_on_table(
            &at,
            &store,
            table,
            raw.kept_by.is_some(),
            raw.hold.as_ref().map(|h| h.get_ref().as_str()),
            action.as_ref(),
            &what,
            ctx,
            diags,
        );
    }
    if let (Some(kept_by), Some(table)) = (&raw.kept_by, &table) {
        check_kept_by(
            kept_by,
            loc(kept_by.span()),
            &store,
            table,
            action.as_ref(),
            &what,
            ctx,
            diags,
        );
    }
    if diags.0.len() > errors_before {
        return None;
    }
    Some(SubjectTable {
        store,
        table: table?,
        matches,
        action: action?,
        kept_by: raw.kept_by.as_ref().map(|k| k.get_ref().clone()),
        hold: raw.hold.as_ref().map(|h| h.get_ref().clone()),
        authoritative,
        cascades,
        at,
    })
}

/// `match = { identifier = "column" }`: the subject's identifiers, valid columns.
fn matches(
    source: &Source,
    raw: &RawSubjectTable,
    what: &str,
    identifiers: &[String],
    diags: &mut Diagnosed,
) -> Vec<(String, String)> {
    let at = source.span_location(Some(raw.matches.span()));
    if raw.matches.get_ref().is_empty() {
        diags.push(
            at.clone(),
            None,
            format!("{what}: match is empty; write match = {{ <identifier> = \"<column>\" }}"),
        );
    }
    let mut matches = Vec::new();
    for (identifier, column) in raw.matches.get_ref() {
        if !identifiers.contains(identifier) {
            diags.push(
                at.clone(),
                None,
                format!("{what}: match: {identifier:?} is not one of the subject's identifiers {identifiers:?}"),
            );
        }
        if let Err(err) = check_identifier(column) {
            diags.push(at.clone(), None, format!("{what}: match: {err}"));
        }
        matches.push((identifier.clone(), column.clone()));
    }
    matches
}

/// `authoritative = [...]`: followed identifiers the table matches on.
fn authoritative(
    source: &Source,
    raw: &RawSubjectTable,
    what: &str,
    scope: &Scope<'_>,
    diags: &mut Diagnosed,
) -> Vec<String> {
    let Some(spanned) = &raw.authoritative else {
        return Vec::new();
    };
    let at = source.span_location(Some(spanned.span()));
    for identifier in spanned.get_ref() {
        if !scope.follow.contains(identifier) {
            diags.push(at.clone(), None, format!("{what}: authoritative: {identifier:?} is not followed; authoritative names identifiers of follow {:?}", scope.follow));
        } else if !raw.matches.get_ref().contains_key(identifier) {
            diags.push(at.clone(), None, format!("{what}: authoritative: the table does not match on {identifier:?}; add it to match"));
        }
    }
    spanned.get_ref().clone()
}

/// `[[subject.table.cascade]]`: one level, on a delete, into no table a
/// rule keeps.
#[allow(clippy::too_many_arguments)]
fn cascades(
    source: &Source,
    raw: &RawSubjectTable,
    at: &Location,
    store: &str,
    action: Option<&Action>,
    what: &str,
    ctx: &SubjectContext<'_>,
    diags: &mut Diagnosed,
) -> Vec<Cascade> {
    let cascades: Vec<Cascade> = related_tables(
        source,
        raw.cascade.as_deref(),
        RelatedKind::Cascade,
        None,
        diags,
    )
    .into_iter()
    .map(|(parts, _)| Cascade {
        related: parts.related,
        parent: parts.parent,
    })
    .collect();
    if !cascades.is_empty() && !matches!(action, Some(Action::Delete)) {
        diags.push(
            at.clone(),
            None,
            format!("{what}: cascade applies only to action = \"delete\""),
        );
    }
    for cascade in &cascades {
        let table = &cascade.related.table;
        let problem = ctx
            .rules
            .iter()
            .filter(|r| r.store == store && &r.table == table)
            .find_map(|r| cascade_against_rule(r, ctx.categories));
        if let Some(problem) = problem {
            diags.push(
                cascade.related.at.clone(),
                None,
                format!("{what}: {problem}"),
            );
        }
    }
    if let Some(cascade) = cascades.iter().find(|c| c.parent.is_some()) {
        diags.push(
            cascade.related.at.clone(),
            None,
            format!("{what}: a cascade off another cascade (parent) is not supported for erasure yet; declare that table as a [[subject.table]] of its own"),
        );
    }
    cascades
}

fn action(
    source: &Source,
    raw: &RawSubjectTable,
    what: &str,
    diags: &mut Diagnosed,
) -> Option<Action> {
    let at = source.span_location(Some(raw.action.span()));
    let name = raw.action.get_ref().as_str();
    let anonymise = match name {
        "delete" => {
            if let Some(columns) = &raw.columns {
                diags.push(
                    source.span_location(Some(columns.span())),
                    None,
                    format!("{what}: columns applies only to pseudonymise and anonymise"),
                );
                return None;
            }
            return Some(Action::Delete);
        }
        "pseudonymise" => false,
        "anonymise" => true,
        other => {
            diags.push(
                at,
                None,
                format!("{what}: unknown action {other:?}; use delete, pseudonymise or anonymise"),
            );
            return None;
        }
    };
    let Some(columns) = raw.columns.as_ref().filter(|c| !c.get_ref().is_empty()) else {
        diags.push(at, None, format!("{what}: action = {name:?} needs columns = {{ <column> = \"null\" | \"redact\" | \"hmac\" | \"hmac_email\" }}"));
        return None;
    };
    let errors_before = diags.0.len();
    let mut actions = Vec::new();
    for (column, text) in columns.get_ref() {
        let at = source.span_location(Some(text.span()));
        if let Err(err) = check_identifier(column) {
            diags.push(at.clone(), None, format!("{what}: columns: {err}"));
        }
        match ColumnAction::parse(text.get_ref()) {
            Ok(a) if !erasure_column(a) => diags.push(at, None, format!("{what}: column {column:?}: {} keeps part of the value; erasure takes null, redact, hmac or hmac_email", a.name())),
            Ok(a) if anonymise && a.is_keyed() => diags.push(at, None, format!("{what}: column {column:?}: {} writes a keyed token, which whoever holds the key can recompute: pseudonymised data, not anonymised. Use null or redact, or action = \"pseudonymise\"", a.as_str())),
            Ok(a) => actions.push((column.clone(), a)),
            Err(err) => diags.push(at, None, format!("{what}: column {column:?}: {err}")),
        }
    }
    if diags.0.len() > errors_before {
        return None;
    }
    Some(match anonymise {
        true => Action::Anonymise { columns: actions },
        false => Action::Pseudonymise { columns: actions },
    })
}

/// Erasure on a table keeps what the table's rules keep (see
/// [`erasure_against_rule`]), for the rules on the table as written here;
/// `check` and the plan hold them to the tables as the store resolves them.
#[allow(clippy::too_many_arguments)]
fn check_rules_on_table(
    at: &Location,
    store: &str,
    table: &TableRef,
    has_kept_by: bool,
    hold: Option<&str>,
    action: Option<&Action>,
    what: &str,
    ctx: &SubjectContext<'_>,
    diags: &mut Diagnosed,
) {
    for rule in ctx
        .rules
        .iter()
        .filter(|r| r.store == store && &r.table == table)
    {
        for problem in erasure_against_rule(rule, ctx.categories, has_kept_by, hold, action) {
            diags.push(at.clone(), None, format!("{what}: {problem}"));
        }
    }
}

/// What `rule`, on the table a subject table erases, forbids erasure to
/// do there: delete a row kept for a statutory minimum (unless the table
/// names the rule in `kept_by` and only overwrites columns), or delete a
/// row the rule holds (the subject table must hold by the same column; a
/// hold table cannot be followed yet). Erasing columns of a held row (a
/// marketing objection while a contract dispute is open) is the rule
/// writer's call. Each problem without the subject's prefix.
pub fn erasure_against_rule(
    rule: &Rule,
    categories: &BTreeMap<String, Category>,
    has_kept_by: bool,
    hold: Option<&str>,
    action: Option<&Action>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let table = &rule.table;
    let deletes = matches!(action, Some(Action::Delete));
    if !deletes {
        return problems;
    }
    if !has_kept_by && let Some(why) = minimum_of(rule, categories) {
        problems.push(format!("table {table} is kept for a statutory minimum ({why}) by rule {}; erasure may not delete its rows before that: name the rule in kept_by and pseudonymise or anonymise the columns that name the person", rule.id));
    }
    if let Some(column) = &rule.hold
        && hold != Some(column.as_str())
    {
        problems.push(format!("rule {} holds rows of table {table} while {column} is set; erasure must hold them too: hold = {column:?}", rule.id));
    }
    if !rule.hold_tables.is_empty() {
        problems.push(format!("rule {} holds rows of table {table} through a hold table, which erasure cannot follow yet; hold them with a column instead", rule.id));
    }
    problems
}

/// Why `rule` keeps its rows for a statutory minimum: its category's floor
/// (`minimum`). A rule's own `kind = "minimum"` is not one: "at least 0
/// days" is how a rule deletes at once.
fn minimum_of(rule: &Rule, categories: &BTreeMap<String, Category>) -> Option<String> {
    categories
        .get(&rule.category)
        .is_some_and(|c| c.minimum.is_some())
        .then(|| format!("category {}", rule.category))
}

/// Why a declared cascade may not delete rows of `rule`'s table: the rule
/// keeps them for a statutory minimum or under a hold. Without the
/// subject's prefix.
pub fn cascade_against_rule(
    rule: &Rule,
    categories: &BTreeMap<String, Category>,
) -> Option<String> {
    let keeps = minimum_of(rule, categories).is_some()
        || rule.hold.is_some()
        || !rule.hold_tables.is_empty();
    keeps.then(|| format!("cascade: rule {} keeps rows of table {} for a statutory minimum or under a hold, which a cascade would take; declare that table as a [[subject.table]] of its own", rule.id, rule.table))
}

/// `kept_by` names a minimum rule on the same table that deletes the rows
/// when its period ends; until then erasure may only overwrite columns.
#[allow(clippy::too_many_arguments)]
fn check_kept_by(
    kept_by: &Spanned<String>,
    at: Location,
    store: &str,
    table: &TableRef,
    action: Option<&Action>,
    what: &str,
    ctx: &SubjectContext<'_>,
    diags: &mut Diagnosed,
) {
    let id = kept_by.get_ref();
    if matches!(action, Some(Action::Delete)) {
        diags.push(at.clone(), None, format!("{what}: kept_by: a row kept under a minimum cannot be deleted now; pseudonymise or anonymise the columns that name the person"));
    }
    let Some(rule) = ctx.rules.iter().find(|r| &r.id == id) else {
        diags.push(at, None, format!("{what}: kept_by: no rule {id:?}"));
        return;
    };
    // As written, `public.invoices` may be `invoices`: only a table that
    // cannot be the same is refused here; `check` and the plan compare
    // them as the store resolves them.
    if rule.store != store || !may_be_same(&rule.table, table) {
        diags.push(
            at.clone(),
            None,
            format!(
                "{what}: kept_by: rule {id} works on {}.{}, not this table",
                rule.store, rule.table
            ),
        );
    }
    if rule.timing.kind != PeriodKind::Minimum || rule.action != Action::Delete {
        diags.push(
            at,
            None,
            format!(
                "{what}: kept_by: rule {id} must be a minimum that deletes the rows when it ends"
            ),
        );
    }
}

/// Whether two tables as written may be one: the same name, and the same
/// schema where both name one.
fn may_be_same(a: &TableRef, b: &TableRef) -> bool {
    a.name == b.name && (a.schema.is_none() || b.schema.is_none() || a.schema == b.schema)
}

#[cfg(test)]
mod tests {
    const CONFIG: &str = "timezone = \"Europe/Copenhagen\"\nkey_file = \"key\"\nerasure_store = \"shop\"\nerasure_ledger = \"ledger.jsonl\"\n[stores.shop]\nengine = \"sqlite\"\npath = \"shop.db\"\n";

    const RULE: &str = "[categories.test]\ndescription = \"t\"\n\n[[rule]]\nid = \"invoices-5y\"\nstore = \"shop\"\ntable = \"invoices\"\ncategory = \"test\"\nafter = \"issued\"\nretain = \"5 years\"\naction = \"delete\"\n\n";

    fn load(config: &str, rules: &str) -> Result<crate::rules::Policy, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("glemsel.toml"), config).unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        std::fs::write(dir.path().join("rules/shop.toml"), format!("{RULE}{rules}")).unwrap();
        crate::rules::load(&dir.path().join("glemsel.toml")).map_err(|d| {
            d.0.iter()
                .map(|d| {
                    let text = d.to_string();
                    text[text.find("rules/").unwrap_or(0)..].to_string()
                })
                .collect()
        })
    }

    #[test]
    fn a_subject_loads_with_its_deadline_and_tables() {
        let policy = load(
            CONFIG,
            "[[subject]]\nkind = \"customer\"\nidentifiers = [\"email\"]\ndeadline = \"1 month\"\n\n[[subject.table]]\nstore = \"shop\"\ntable = \"invoices\"\nmatch = { email = \"email\" }\naction = \"pseudonymise\"\ncolumns = { name = \"hmac\" }\nkept_by = \"invoices-5y\"\n",
        )
        .unwrap();
        let subject = policy.subject_of("email").unwrap();
        assert_eq!(subject.deadline.to_string(), "1 month");
        assert_eq!(subject.tables[0].kept_by.as_deref(), Some("invoices-5y"));
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let errors = load(
            "timezone = \"Europe/Copenhagen\"\n[stores.shop]\nengine = \"sqlite\"\npath = \"shop.db\"\n",
            "[[subject]]\nkind = \"customer\"\nidentifiers = [\"email\"]\ndeadline = \"3 working days\"\n\n[[subject.table]]\nstore = \"shop\"\ntable = \"invoices\"\nmatch = { phone = \"phone\" }\naction = \"delete\"\nkept_by = \"invoices-5y\"\n\n[[subject.table]]\nstore = \"crm\"\ntable = \"people\"\nmatch = { email = \"email\" }\naction = \"anonymise\"\ncolumns = { name = \"hmac\", born = \"year\" }\n\n[[subject]]\nkind = \"lead\"\nidentifiers = [\"email\"]\ndeadline = \"soon\"\n",
        )
        .unwrap_err();
        let expected = [
            "rules/shop.toml:16:12: subject customer: deadline counts working days: set holidays = \"DK\" or holidays = \"none\" in glemsel.toml",
            "rules/shop.toml:21:9: subject customer: table invoices: match: \"phone\" is not one of the subject's identifiers [\"email\"]",
            "rules/shop.toml:23:11: subject customer: table invoices: kept_by: a row kept under a minimum cannot be deleted now; pseudonymise or anonymise the columns that name the person",
            "rules/shop.toml:26:9: subject customer: table people: store \"crm\" is not configured in glemsel.toml",
            "rules/shop.toml:30:20: subject customer: table people: column \"name\": hmac writes a keyed token, which whoever holds the key can recompute: pseudonymised data, not anonymised. Use null or redact, or action = \"pseudonymise\"",
            "rules/shop.toml:30:35: subject customer: table people: column \"born\": year keeps part of the value; erasure takes null, redact, hmac or hmac_email",
            "rules/shop.toml:34:15: subject lead: identifier \"email\" is also subject customer's",
            "rules/shop.toml:35:12: subject lead: deadline: period \"soon\" must start with a whole number",
        ];
        for line in expected {
            assert!(
                errors.iter().any(|e| e.contains(line)),
                "missing {line}\nin {errors:#?}"
            );
        }
        assert!(
            errors
                .iter()
                .any(|e| e.contains("erasure requests need the key")),
            "{errors:#?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("erasure requests need a ledger: set erasure_store")),
            "{errors:#?}"
        );
    }

    /// Erasure keeps what the table's rules keep: no delete before a
    /// minimum (without kept_by), the rules' hold column, no cascade into a
    /// kept table.
    #[test]
    fn erasure_cannot_take_what_a_rule_keeps() {
        let held = "[categories.books]\ndescription = \"b\"\nminimum = \"5 years\"\n\n[[rule]]\nid = \"ledger-5y\"\nstore = \"shop\"\ntable = \"ledger\"\ncategory = \"books\"\nafter = \"posted\"\nretain = \"5 years\"\naction = \"delete\"\n\n[[rule]]\nid = \"people-held\"\nstore = \"shop\"\ntable = \"people\"\ncategory = \"test\"\nafter = \"seen\"\nretain = \"1 year\"\naction = \"delete\"\nhold = \"legal_hold\"\n\n";
        let errors = load(
            CONFIG,
            &format!("{held}[[subject]]\nkind = \"customer\"\nidentifiers = [\"email\"]\ndeadline = \"1 month\"\n\n[[subject.table]]\nstore = \"shop\"\ntable = \"ledger\"\nmatch = {{ email = \"email\" }}\naction = \"delete\"\n\n[[subject.table]]\nstore = \"shop\"\ntable = \"people\"\nmatch = {{ email = \"email\" }}\naction = \"delete\"\n\n[[subject.table]]\nstore = \"shop\"\ntable = \"customers\"\nmatch = {{ email = \"email\" }}\naction = \"delete\"\n[[subject.table.cascade]]\ntable = \"ledger\"\non = {{ customer_id = \"id\" }}\n"),
        )
        .unwrap_err();
        for line in [
            "subject customer: table ledger: table ledger is kept for a statutory minimum (category books) by rule ledger-5y; erasure may not delete its rows before that",
            "subject customer: table people: rule people-held holds rows of table people while legal_hold is set; erasure must hold them too: hold = \"legal_hold\"",
            "subject customer: table customers: cascade: rule ledger-5y keeps rows of table ledger for a statutory minimum or under a hold",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(line)),
                "missing {line}\nin {errors:#?}"
            );
        }
    }

    /// A cascade into a table any subject keeps (held, or only
    /// overwritten) is refused at the cascade's line, naming where the
    /// kept table is declared; into a table erasure deletes, it is not.
    #[test]
    fn a_cascade_into_a_table_a_subject_keeps_is_refused() {
        let subject = |kind: &str, identifier: &str, notes: &str| {
            format!(
                "[[subject]]\nkind = \"{kind}\"\nidentifiers = [\"{identifier}\"]\ndeadline = \"1 month\"\n\n[[subject.table]]\nstore = \"shop\"\ntable = \"notes\"\nmatch = {{ {identifier} = \"{identifier}\" }}\n{notes}\n"
            )
        };
        let customers = "[[subject]]\nkind = \"customer\"\nidentifiers = [\"email\"]\ndeadline = \"1 month\"\n\n[[subject.table]]\nstore = \"shop\"\ntable = \"customers\"\nmatch = { email = \"email\" }\naction = \"delete\"\n[[subject.table.cascade]]\ntable = \"notes\"\non = { customer_id = \"id\" }\n\n";
        let held = subject(
            "author",
            "author_email",
            "action = \"delete\"\nhold = \"disputed\"",
        );
        let errors = load(CONFIG, &format!("{customers}{held}")).unwrap_err();
        let refused = errors
            .iter()
            .find(|e| e.starts_with("rules/shop.toml:24:9: subject customer: table customers: cascade: notes is also subject author's table notes (declared at "))
            .unwrap_or_else(|| panic!("{errors:#?}"));
        assert!(
            refused.contains("rules/shop.toml:34:9), whose rows erasure keeps while they are held"),
            "{refused}"
        );
        let deleted = subject("author", "author_email", "action = \"delete\"");
        load(CONFIG, &format!("{customers}{deleted}")).unwrap();
    }

    /// `normalise` names the subject's identifiers, each `lower` or
    /// `exact`; an identifier it does not name compares in lower case.
    #[test]
    fn normalise_is_declared_per_identifier() {
        let subject = |normalise: &str| {
            format!(
                "[[subject]]\nkind = \"customer\"\nidentifiers = [\"email\", \"customer_no\"]\ndeadline = \"1 month\"\nnormalise = {normalise}\n\n[[subject.table]]\nstore = \"shop\"\ntable = \"customers\"\nmatch = {{ email = \"email\", customer_no = \"no\" }}\naction = \"delete\"\n"
            )
        };
        let policy = load(CONFIG, &subject("{ customer_no = \"exact\" }")).unwrap();
        let customer = &policy.subjects[0];
        assert_eq!(
            customer.normalise_of("customer_no"),
            super::Normalise::Exact
        );
        assert_eq!(customer.normalise_of("email"), super::Normalise::Lower);
        let errors =
            load(CONFIG, &subject("{ phone = \"lower\", email = \"upper\" }")).unwrap_err();
        for line in [
            "rules/shop.toml:17:13: subject customer: normalise: \"phone\" is not one of the subject's identifiers [\"email\", \"customer_no\"]",
            "rules/shop.toml:17:13: subject customer: normalise: email = \"upper\": use \"lower\" or \"exact\"",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(line)),
                "missing {line}\nin {errors:#?}"
            );
        }
    }

    /// A followed identifier is learnt from exactly one table, which
    /// matches on it: none, two, or one not followed is an error.
    #[test]
    fn follow_needs_one_authoritative_table() {
        let subject = "[[subject]]\nkind = \"customer\"\nidentifiers = [\"email\", \"customer_no\", \"phone\"]\ndeadline = \"1 month\"\nfollow = [\"customer_no\"]\n\n";
        let table = |name: &str, authoritative: &str| {
            format!(
                "[[subject.table]]\nstore = \"shop\"\ntable = \"{name}\"\nmatch = {{ email = \"email\", customer_no = \"no\" }}\naction = \"delete\"\n{authoritative}\n"
            )
        };
        let none = load(CONFIG, &format!("{subject}{}", table("customers", ""))).unwrap_err();
        assert!(
            none.iter().any(|e| e.contains("rules/shop.toml:17:10: subject customer: follow: \"customer_no\" has no authoritative table; add authoritative = [\"customer_no\"]")),
            "{none:#?}"
        );
        let one = "authoritative = [\"customer_no\"]";
        let two = load(
            CONFIG,
            &format!(
                "{subject}{}{}",
                table("customers", one),
                table("accounts", one)
            ),
        )
        .unwrap_err();
        assert!(
            two.iter().any(|e| e.contains("subject customer: authoritative: \"customer_no\" has an authoritative table already")),
            "{two:#?}"
        );
        let unfollowed = load(
            CONFIG,
            &format!(
                "{subject}{}",
                table(
                    "customers",
                    "authoritative = [\"customer_no\", \"phone\", \"email\"]"
                )
            ),
        )
        .unwrap_err();
        for line in [
            "subject customer: table customers: authoritative: \"phone\" is not followed",
            "subject customer: table customers: authoritative: \"email\" is not followed",
        ] {
            assert!(
                unfollowed.iter().any(|e| e.contains(line)),
                "missing {line}\nin {unfollowed:#?}"
            );
        }
        let policy = load(CONFIG, &format!("{subject}{}", table("customers", one))).unwrap();
        assert_eq!(policy.subjects[0].tables[0].authoritative, ["customer_no"]);
    }
}
