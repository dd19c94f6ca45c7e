//! A live table as glemsel sees it: columns with their kinds, keys and the
//! foreign keys that point at it. Data only: the stores fill it in
//! (`describe`), the planner reads it.

use crate::rules::TableRef;

/// What kind of values a column holds, as far as glemsel cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    Text,
    Date,
    /// A timestamp without time zone: wall-clock time in the store's zone.
    Timestamp,
    /// A timestamp that names an instant (PostgreSQL timestamptz).
    TimestampTz,
    Boolean,
    Integer,
    Other,
}

impl ColumnKind {
    pub fn is_temporal(self) -> bool {
        matches!(
            self,
            ColumnKind::Date | ColumnKind::Timestamp | ColumnKind::TimestampTz
        )
    }
}

/// One column of a live table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Column {
    pub name: String,
    /// The type as the database spells it, e.g. `character varying(80)`.
    pub data_type: String,
    pub kind: ColumnKind,
    pub nullable: bool,
    /// The longest text the column holds, in characters.
    pub max_chars: Option<usize>,
}

/// What a foreign key does to child rows when their parent is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDelete {
    Cascade,
    SetNull,
    SetDefault,
    Restrict,
    NoAction,
}

impl OnDelete {
    pub fn as_sql(self) -> &'static str {
        match self {
            OnDelete::Cascade => "ON DELETE CASCADE",
            OnDelete::SetNull => "ON DELETE SET NULL",
            OnDelete::SetDefault => "ON DELETE SET DEFAULT",
            OnDelete::Restrict => "ON DELETE RESTRICT",
            OnDelete::NoAction => "ON DELETE NO ACTION",
        }
    }

    /// The action as the SQL standard names it (`CASCADE`, `SET NULL`, ...),
    /// the way MySQL's catalog and SQLite's pragma report it.
    pub fn from_sql_name(name: &str) -> OnDelete {
        match name {
            "CASCADE" => OnDelete::Cascade,
            "SET NULL" => OnDelete::SetNull,
            "SET DEFAULT" => OnDelete::SetDefault,
            "RESTRICT" => OnDelete::Restrict,
            _ => OnDelete::NoAction,
        }
    }

    /// Whether deleting a parent changes other rows without saying so.
    pub fn widens(self) -> bool {
        matches!(
            self,
            OnDelete::Cascade | OnDelete::SetNull | OnDelete::SetDefault
        )
    }
}

/// A foreign key in another table (or this one) that points at a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    /// The table holding the foreign key (the child).
    pub table: TableRef,
    /// Its columns, in order.
    pub columns: Vec<String>,
    /// The columns of the referenced (parent) table they point at.
    pub references: Vec<String>,
    pub on_delete: OnDelete,
}

/// A live table, as introspected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// Schema-qualified as the store resolved it.
    pub table: TableRef,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    /// Other unique keys whose columns are all NOT NULL, in index order.
    pub unique_keys: Vec<Vec<String>>,
    /// Foreign keys elsewhere that point at this table.
    pub referenced_by: Vec<ForeignKey>,
    /// Every column in a unique index of any kind (primary, nullable,
    /// partial): no two rows may get the same value there.
    pub unique_columns: Vec<String>,
    /// Columns of this table's own foreign keys: their values must exist
    /// in another table.
    pub foreign_key_columns: Vec<String>,
}

impl TableSchema {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}
