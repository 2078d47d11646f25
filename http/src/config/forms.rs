//! Form schemas: the fields a tenant defines (自定义字段) for customers,
//! tickets and service summaries, and the check of values against them.

use super::{READ, WRITE};
use crate::auth::Caller;
use crate::common::{check_id, check_text, format_date, parse_date};
use crate::error::{ApiError, ApiResult, FieldProblem};
use crate::extract::{ApiJson, ApiPath};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use switchboard_storage::model::{
    ConfigKind, CustomFields, FieldDef, FieldType, FieldValue, FormSchema, TenantId,
};
use switchboard_storage::{ErrorKind, Expect};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Which form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    Customer,
    Ticket,
    ServiceSummary,
}

impl Form {
    pub fn id(self) -> &'static str {
        match self {
            Form::Customer => "customer",
            Form::Ticket => "ticket",
            Form::ServiceSummary => "service_summary",
        }
    }
}

/// The kind of a field and its constraints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FieldTypeDoc {
    Text {
        max_len: u32,
    },
    Number,
    Bool,
    /// `YYYY-MM-DD`.
    Date,
    /// One of the options.
    Choice {
        options: Vec<String>,
    },
    /// Several of the options.
    Choices {
        options: Vec<String>,
    },
}

/// One field of a form.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldDefDoc {
    pub key: String,
    /// The label users see (e.g. 客户等级).
    pub label: String,
    pub field_type: FieldTypeDoc,
    #[serde(default)]
    pub required: bool,
}

/// A form's fields.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FormSchemaDoc {
    pub fields: Vec<FieldDefDoc>,
    pub revision: Option<u64>,
}

fn doc_of(s: &FormSchema, revision: Option<u64>) -> FormSchemaDoc {
    FormSchemaDoc {
        fields: s
            .fields
            .iter()
            .map(|f| FieldDefDoc {
                key: f.key.clone(),
                label: f.label.clone(),
                field_type: match &f.field_type {
                    FieldType::Text { max_len } => FieldTypeDoc::Text { max_len: *max_len },
                    FieldType::Number => FieldTypeDoc::Number,
                    FieldType::Bool => FieldTypeDoc::Bool,
                    FieldType::Date => FieldTypeDoc::Date,
                    FieldType::Choice { options } => FieldTypeDoc::Choice {
                        options: options.clone(),
                    },
                    FieldType::Choices { options } => FieldTypeDoc::Choices {
                        options: options.clone(),
                    },
                },
                required: f.required,
            })
            .collect(),
        revision,
    }
}

/// A form's fields (none defined: an empty list).
#[utoipa::path(get, path = "/form-schemas/{form}", tag = "config", params(("form" = Form, Path)),
    responses((status = 200, body = FormSchemaDoc)))]
async fn get_form(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(form): ApiPath<Form>,
) -> ApiResult<Json<FormSchemaDoc>> {
    // Agents fill these forms in: they may read them.
    if caller.agent.is_none() {
        caller.require(READ, "reading form schemas")?;
    }
    Ok(Json(
        match state
            .store
            .get::<FormSchema>(&caller.tenant, form.id())
            .await?
        {
            Some(v) => doc_of(&v.record, Some(v.revision)),
            None => FormSchemaDoc {
                fields: Vec::new(),
                revision: None,
            },
        },
    ))
}

/// Sets a form's fields. Values stored before keep what they had.
#[utoipa::path(put, path = "/form-schemas/{form}", tag = "config", params(("form" = Form, Path)),
    request_body = FormSchemaDoc,
    responses((status = 200, body = FormSchemaDoc), (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn put_form(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(form): ApiPath<Form>,
    ApiJson(doc): ApiJson<FormSchemaDoc>,
) -> ApiResult<Json<FormSchemaDoc>> {
    caller.require(WRITE, "changing form schemas")?;
    if doc.fields.len() > 100 {
        return Err(ApiError::field("fields", "at most 100 fields"));
    }
    let mut fields = Vec::new();
    for (i, f) in doc.fields.iter().enumerate() {
        let p = |x: &str| format!("fields[{i}].{x}");
        check_id(&p("key"), &f.key)?;
        if fields.iter().any(|o: &FieldDef| o.key == f.key) {
            return Err(ApiError::field(
                p("key"),
                format!("{:?} is defined twice", f.key),
            ));
        }
        check_text(&p("label"), &f.label, 100)?;
        let field_type = match &f.field_type {
            FieldTypeDoc::Text { max_len } => {
                if !(1..=10_000).contains(max_len) {
                    return Err(ApiError::field(
                        p("field_type.max_len"),
                        "must be within 1..=10000",
                    ));
                }
                FieldType::Text { max_len: *max_len }
            }
            FieldTypeDoc::Number => FieldType::Number,
            FieldTypeDoc::Bool => FieldType::Bool,
            FieldTypeDoc::Date => FieldType::Date,
            FieldTypeDoc::Choice { options } | FieldTypeDoc::Choices { options } => {
                if options.is_empty() || options.len() > 200 {
                    return Err(ApiError::field(
                        p("field_type.options"),
                        "needs 1 to 200 options",
                    ));
                }
                for (j, o) in options.iter().enumerate() {
                    check_text(&p(&format!("field_type.options[{j}]")), o, 100)?;
                }
                if matches!(f.field_type, FieldTypeDoc::Choice { .. }) {
                    FieldType::Choice {
                        options: options.clone(),
                    }
                } else {
                    FieldType::Choices {
                        options: options.clone(),
                    }
                }
            }
        };
        fields.push(FieldDef {
            key: f.key.clone(),
            label: f.label.clone(),
            field_type,
            required: f.required,
        });
    }
    let schema = FormSchema {
        tenant: caller.tenant.clone(),
        id: form.id().into(),
        fields,
    };
    let old = state
        .store
        .get::<FormSchema>(&caller.tenant, form.id())
        .await?;
    let expect = match (doc.revision, &old) {
        (Some(r), _) => Expect::Revision(r),
        (None, Some(o)) => Expect::Revision(o.revision),
        (None, None) => Expect::Absent,
    };
    let rev = state
        .store
        .put(&schema, expect)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::Conflict => {
                ApiError::conflict("the form was changed meanwhile: read it again")
            }
            _ => e.into(),
        })?;
    state.changed(&caller.tenant, ConfigKind::FormSchema, form.id());
    Ok(Json(doc_of(&schema, Some(rev))))
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_form, put_form))
}

/// Custom field values as the API shows them: plain JSON values, typed
/// by the form (a string, number, boolean, `YYYY-MM-DD` date, option, or
/// list of options).
pub(crate) fn plain_fields(fields: &CustomFields) -> BTreeMap<String, Value> {
    fields
        .iter()
        .map(|(k, v)| {
            let v = match v {
                FieldValue::Text(s) | FieldValue::Choice(s) => Value::String(s.clone()),
                FieldValue::Number(n) => serde_json::Number::from_f64(*n)
                    .map(Value::Number)
                    .unwrap_or(Value::Null),
                FieldValue::Bool(b) => Value::Bool(*b),
                FieldValue::Date(d) => Value::String(format_date(*d)),
                FieldValue::Choices(c) => {
                    Value::Array(c.iter().cloned().map(Value::String).collect())
                }
            };
            (k.clone(), v)
        })
        .collect()
}

/// Checks values against the tenant's form and types them; every
/// problem is reported, each under `fields.<key>`.
pub(crate) async fn typed_fields(
    state: &AppState,
    tenant: &TenantId,
    form: Form,
    values: &BTreeMap<String, Value>,
) -> ApiResult<CustomFields> {
    let schema = state
        .store
        .get::<FormSchema>(tenant, form.id())
        .await?
        .map(|v| v.record.fields)
        .unwrap_or_default();
    let mut out = CustomFields::new();
    let mut problems = Vec::new();
    let mut bad = |key: &str, message: String| {
        problems.push(FieldProblem {
            field: format!("fields.{key}"),
            message,
        })
    };
    for (key, value) in values {
        let Some(def) = schema.iter().find(|d| d.key == *key) else {
            bad(key, format!("the {} form has no field {key:?}", form.id()));
            continue;
        };
        if value.is_null() {
            continue;
        }
        let typed = match (&def.field_type, value) {
            (FieldType::Text { max_len }, Value::String(s)) => {
                if s.chars().count() > *max_len as usize {
                    Err(format!("is longer than {max_len} characters"))
                } else {
                    Ok(FieldValue::Text(s.clone()))
                }
            }
            (FieldType::Number, Value::Number(n)) => n
                .as_f64()
                .filter(|f| f.is_finite())
                .map(FieldValue::Number)
                .ok_or_else(|| "is not a finite number".to_owned()),
            (FieldType::Bool, Value::Bool(b)) => Ok(FieldValue::Bool(*b)),
            (FieldType::Date, Value::String(s)) => parse_date("", s)
                .map(FieldValue::Date)
                .map_err(|_| format!("{s:?} is not a date (YYYY-MM-DD)")),
            (FieldType::Choice { options }, Value::String(s)) => {
                if options.contains(s) {
                    Ok(FieldValue::Choice(s.clone()))
                } else {
                    Err(format!("{s:?} is not one of {options:?}"))
                }
            }
            (FieldType::Choices { options }, Value::Array(items)) => {
                let mut picked = Vec::new();
                let mut err = None;
                for i in items {
                    match i.as_str() {
                        Some(s) if options.iter().any(|o| o == s) => picked.push(s.to_owned()),
                        _ => err = Some(format!("{i} is not one of {options:?}")),
                    }
                }
                match err {
                    Some(e) => Err(e),
                    None => Ok(FieldValue::Choices(picked)),
                }
            }
            (t, _) => Err(format!("expects {}", type_name(t))),
        };
        match typed {
            Ok(v) => {
                out.insert(key.clone(), v);
            }
            Err(m) => bad(key, m),
        }
    }
    for def in schema.iter().filter(|d| d.required) {
        if values.get(&def.key).is_none_or(Value::is_null) {
            bad(&def.key, format!("{} is required", def.label));
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        let first = problems
            .iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect::<Vec<_>>()
            .join("; ");
        Err(ApiError::fields(first, problems))
    }
}

fn type_name(t: &FieldType) -> &'static str {
    match t {
        FieldType::Text { .. } => "a text",
        FieldType::Number => "a number",
        FieldType::Bool => "true or false",
        FieldType::Date => "a date YYYY-MM-DD",
        FieldType::Choice { .. } => "one of its options",
        FieldType::Choices { .. } => "a list of its options",
    }
}
