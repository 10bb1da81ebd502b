//! One row per kind of change: the writer's schema (the older version), the reader's (the new
//! one, under BACKWARD), and the verdict: compatible, or the change kind that must be
//! reported. Each row that says compatible is also tried against sample documents: none the
//! writer accepts may be refused by the reader.

use serde_json::{Value, json};

use super::{Budget, JsonSchema, can_read};

/// Draft 4 (boolean `exclusiveMaximum`), draft 7 and 2020-12 meta-schemas.
const D4: &str = "http://json-schema.org/draft-04/schema#";
const D7: &str = "http://json-schema.org/draft-07/schema#";

fn draft(d: &str, mut v: Value) -> Value {
    v.as_object_mut()
        .unwrap()
        .insert("$schema".into(), d.into());
    v
}

fn obj(props: Value) -> Value {
    json!({"type": "object", "properties": props})
}

fn closed(props: Value) -> Value {
    json!({"type": "object", "properties": props, "additionalProperties": false})
}

const OK: Option<&str> = None;

fn no(kind: &'static str) -> Option<&'static str> {
    Some(kind)
}

fn cases() -> Vec<(&'static str, Value, Value, Option<&'static str>)> {
    let s = json!({"type": "string"});
    let i = json!({"type": "integer"});
    let n = json!({"type": "number"});
    vec![
        // Types.
        ("integer to number", i.clone(), n.clone(), OK),
        (
            "number to integer",
            n.clone(),
            i.clone(),
            no("TYPE_NARROWED"),
        ),
        (
            "string to string|null",
            s.clone(),
            json!({"type": ["string", "null"]}),
            OK,
        ),
        (
            "string|null to string",
            json!({"type": ["string", "null"]}),
            s.clone(),
            no("TYPE_NARROWED"),
        ),
        (
            "anything to string",
            json!({}),
            s.clone(),
            no("TYPE_NARROWED"),
        ),
        ("string to anything", s.clone(), json!({}), OK),
        ("string to true", s.clone(), json!(true), OK),
        (
            "string to false",
            s.clone(),
            json!(false),
            no("SCHEMA_NARROWED"),
        ),
        ("false to string", json!(false), s.clone(), OK),
        (
            "integer|string to number|string",
            json!({"type": ["integer", "string"]}),
            json!({"type": ["number", "string"]}),
            OK,
        ),
        // Strings.
        (
            "maxLength raised",
            json!({"type": "string", "maxLength": 10}),
            json!({"type": "string", "maxLength": 20}),
            OK,
        ),
        (
            "maxLength lowered",
            json!({"type": "string", "maxLength": 10}),
            json!({"type": "string", "maxLength": 5}),
            no("MAX_LENGTH_DECREASED"),
        ),
        (
            "maxLength added",
            s.clone(),
            json!({"type": "string", "maxLength": 5}),
            no("MAX_LENGTH_ADDED"),
        ),
        (
            "maxLength removed",
            json!({"type": "string", "maxLength": 5}),
            s.clone(),
            OK,
        ),
        (
            "minLength lowered",
            json!({"type": "string", "minLength": 2}),
            json!({"type": "string", "minLength": 1}),
            OK,
        ),
        (
            "minLength raised",
            json!({"type": "string", "minLength": 1}),
            json!({"type": "string", "minLength": 2}),
            no("MIN_LENGTH_INCREASED"),
        ),
        (
            "minLength 0 added",
            s.clone(),
            json!({"type": "string", "minLength": 0}),
            OK,
        ),
        (
            "pattern added",
            s.clone(),
            json!({"type": "string", "pattern": "^a"}),
            no("PATTERN_CHANGED"),
        ),
        (
            "pattern removed",
            json!({"type": "string", "pattern": "^a"}),
            s.clone(),
            OK,
        ),
        (
            "format added",
            s.clone(),
            json!({"type": "string", "format": "date"}),
            no("STRING_CONSTRAINT_CHANGED"),
        ),
        // Numbers: inclusive bounds.
        (
            "maximum raised",
            json!({"type": "number", "maximum": 10}),
            json!({"type": "number", "maximum": 20}),
            OK,
        ),
        (
            "maximum lowered",
            json!({"type": "number", "maximum": 10}),
            json!({"type": "number", "maximum": 5}),
            no("MAXIMUM_DECREASED"),
        ),
        (
            "maximum added",
            n.clone(),
            json!({"type": "number", "maximum": 5}),
            no("MAXIMUM_ADDED"),
        ),
        (
            "maximum removed",
            json!({"type": "number", "maximum": 5}),
            n.clone(),
            OK,
        ),
        (
            "minimum lowered",
            json!({"type": "number", "minimum": 0}),
            json!({"type": "number", "minimum": -1}),
            OK,
        ),
        (
            "minimum raised",
            json!({"type": "number", "minimum": 0}),
            json!({"type": "number", "minimum": 1}),
            no("MINIMUM_INCREASED"),
        ),
        // Draft 4: boolean exclusiveMaximum / exclusiveMinimum.
        (
            "draft-4 exclusive maximum relaxed",
            draft(
                D4,
                json!({"type": "number", "maximum": 10, "exclusiveMaximum": true}),
            ),
            draft(D4, json!({"type": "number", "maximum": 10})),
            OK,
        ),
        (
            "draft-4 exclusive maximum tightened",
            draft(D4, json!({"type": "number", "maximum": 10})),
            draft(
                D4,
                json!({"type": "number", "maximum": 10, "exclusiveMaximum": true}),
            ),
            no("EXCLUSIVE_MAXIMUM_ADDED"),
        ),
        (
            "draft-4 exclusive minimum relaxed",
            draft(
                D4,
                json!({"type": "number", "minimum": 0, "exclusiveMinimum": true}),
            ),
            draft(D4, json!({"type": "number", "minimum": 0})),
            OK,
        ),
        (
            "draft-4 exclusive minimum tightened",
            draft(D4, json!({"type": "number", "minimum": 0})),
            draft(
                D4,
                json!({"type": "number", "minimum": 0, "exclusiveMinimum": true}),
            ),
            no("EXCLUSIVE_MINIMUM_ADDED"),
        ),
        (
            "draft-4 exclusive maximum raised",
            draft(
                D4,
                json!({"type": "number", "maximum": 10, "exclusiveMaximum": true}),
            ),
            draft(
                D4,
                json!({"type": "number", "maximum": 11, "exclusiveMaximum": true}),
            ),
            OK,
        ),
        (
            "draft-4 exclusive maximum below an inclusive one",
            draft(D4, json!({"type": "number", "maximum": 10})),
            draft(
                D4,
                json!({"type": "number", "maximum": 11, "exclusiveMaximum": true}),
            ),
            OK,
        ),
        // Draft 6+: numeric exclusiveMaximum / exclusiveMinimum.
        (
            "exclusiveMaximum raised",
            json!({"type": "number", "exclusiveMaximum": 10}),
            json!({"type": "number", "exclusiveMaximum": 20}),
            OK,
        ),
        (
            "exclusiveMaximum lowered",
            json!({"type": "number", "exclusiveMaximum": 10}),
            json!({"type": "number", "exclusiveMaximum": 5}),
            no("EXCLUSIVE_MAXIMUM_DECREASED"),
        ),
        (
            "exclusiveMaximum removed",
            json!({"type": "number", "exclusiveMaximum": 10}),
            n.clone(),
            OK,
        ),
        (
            "exclusiveMaximum added",
            n.clone(),
            json!({"type": "number", "exclusiveMaximum": 10}),
            no("EXCLUSIVE_MAXIMUM_ADDED"),
        ),
        (
            "exclusiveMinimum lowered",
            json!({"type": "number", "exclusiveMinimum": 0}),
            json!({"type": "number", "exclusiveMinimum": -1}),
            OK,
        ),
        (
            "exclusiveMinimum raised",
            json!({"type": "number", "exclusiveMinimum": 0}),
            json!({"type": "number", "exclusiveMinimum": 1}),
            no("EXCLUSIVE_MINIMUM_INCREASED"),
        ),
        (
            "maximum made exclusive",
            json!({"type": "number", "maximum": 10}),
            json!({"type": "number", "exclusiveMaximum": 10}),
            no("EXCLUSIVE_MAXIMUM_ADDED"),
        ),
        (
            "exclusive maximum made inclusive",
            json!({"type": "number", "exclusiveMaximum": 10}),
            json!({"type": "number", "maximum": 10}),
            OK,
        ),
        (
            "integers below 10 are at most 9",
            json!({"type": "integer", "exclusiveMaximum": 10}),
            json!({"type": "integer", "maximum": 9}),
            OK,
        ),
        (
            "numbers below 10 are not at most 9",
            json!({"type": "number", "exclusiveMaximum": 10}),
            json!({"type": "number", "maximum": 9}),
            no("MAXIMUM_DECREASED"),
        ),
        (
            "at most 9 is below 10",
            json!({"type": "number", "maximum": 9}),
            json!({"type": "number", "exclusiveMaximum": 10}),
            OK,
        ),
        (
            "integers from 1 are above 0",
            json!({"type": "integer", "minimum": 1}),
            json!({"type": "integer", "exclusiveMinimum": 0}),
            OK,
        ),
        (
            "multipleOf divided",
            json!({"type": "number", "multipleOf": 4}),
            json!({"type": "number", "multipleOf": 2}),
            OK,
        ),
        (
            "multipleOf multiplied",
            json!({"type": "number", "multipleOf": 2}),
            json!({"type": "number", "multipleOf": 4}),
            no("MULTIPLE_OF_CHANGED"),
        ),
        (
            "multipleOf added",
            n.clone(),
            json!({"type": "number", "multipleOf": 2}),
            no("MULTIPLE_OF_CHANGED"),
        ),
        (
            "integers are multiples of 1",
            i.clone(),
            json!({"type": "integer", "multipleOf": 1}),
            OK,
        ),
        // Enums and constants (a writer's listed values are tried one by one).
        (
            "enum extended",
            json!({"enum": ["a", "b"]}),
            json!({"enum": ["a", "b", "c"]}),
            OK,
        ),
        (
            "enum narrowed",
            json!({"enum": ["a", "b"]}),
            json!({"enum": ["a"]}),
            no("ENUM_ARRAY_NARROWED"),
        ),
        (
            "enum added",
            s.clone(),
            json!({"enum": ["a"]}),
            no("ENUM_ARRAY_NARROWED"),
        ),
        (
            "const widened to enum",
            json!({"const": "a"}),
            json!({"enum": ["a", "b"]}),
            OK,
        ),
        (
            "enum narrowed to const",
            json!({"enum": ["a", "b"]}),
            json!({"const": "a"}),
            no("ENUM_ARRAY_NARROWED"),
        ),
        (
            "enum replaced by its type",
            json!({"enum": ["a"]}),
            s.clone(),
            OK,
        ),
        (
            "enum values within a new bound",
            json!({"enum": ["ab", "abc"]}),
            json!({"type": "string", "maxLength": 3}),
            OK,
        ),
        (
            "enum values past a new bound",
            json!({"enum": ["ab", "abcd"]}),
            json!({"type": "string", "maxLength": 3}),
            no("ENUM_ARRAY_NARROWED"),
        ),
        (
            "integer enum within a minimum",
            json!({"enum": [1, 2]}),
            json!({"type": "integer", "minimum": 1}),
            OK,
        ),
        ("enum removed", json!({"enum": ["a"]}), json!({}), OK),
        (
            "const changed",
            json!({"const": 1}),
            json!({"const": 2}),
            no("ENUM_ARRAY_NARROWED"),
        ),
        // Objects: content models.
        (
            "optional property added to a closed model",
            closed(json!({"a": s})),
            closed(json!({"a": s, "b": i})),
            OK,
        ),
        (
            "property added to an open model",
            obj(json!({"a": s})),
            obj(json!({"a": s, "b": i})),
            no("PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"),
        ),
        (
            "property removed from an open model",
            obj(json!({"a": s, "b": i})),
            obj(json!({"a": s})),
            OK,
        ),
        (
            "property removed from a closed model",
            closed(json!({"a": s, "b": i})),
            closed(json!({"a": s})),
            no("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"),
        ),
        (
            "model opened",
            closed(json!({"a": s})),
            obj(json!({"a": s})),
            OK,
        ),
        (
            "model closed",
            obj(json!({"a": s})),
            closed(json!({"a": s})),
            no("ADDITIONAL_PROPERTIES_REMOVED"),
        ),
        (
            "required dropped",
            json!({"type": "object", "properties": {"a": s}, "required": ["a"]}),
            obj(json!({"a": s})),
            OK,
        ),
        (
            "required added",
            obj(json!({"a": s})),
            json!({"type": "object", "properties": {"a": s}, "required": ["a"]}),
            no("REQUIRED_PROPERTY_ADDED"),
        ),
        // Validation does not fill defaults, so a default does not make a new requirement safe.
        (
            "required with a default added",
            obj(json!({"a": s})),
            json!({"type": "object", "properties": {"a": {"type": "string", "default": "x"}}, "required": ["a"]}),
            no("REQUIRED_PROPERTY_ADDED"),
        ),
        (
            "empty-schema property added to an open model",
            obj(json!({"a": s})),
            obj(json!({"a": s, "b": {}})),
            OK,
        ),
        (
            "property fits the writer's additionalProperties",
            json!({"type": "object", "additionalProperties": s}),
            json!({"type": "object", "properties": {"b": s}, "additionalProperties": s}),
            OK,
        ),
        (
            "property narrower than the writer's additionalProperties",
            json!({"type": "object", "additionalProperties": s}),
            json!({"type": "object", "properties": {"b": i}, "additionalProperties": s}),
            no("TYPE_NARROWED"),
        ),
        (
            "additionalProperties widened",
            json!({"type": "object", "additionalProperties": s}),
            json!({"type": "object", "additionalProperties": {"type": ["string", "null"]}}),
            OK,
        ),
        (
            "additionalProperties narrowed",
            json!({"type": "object", "additionalProperties": {"type": "string", "maxLength": 5}}),
            json!({"type": "object", "additionalProperties": {"type": "string", "maxLength": 3}}),
            no("MAX_LENGTH_DECREASED"),
        ),
        (
            "maxProperties raised",
            json!({"type": "object", "maxProperties": 5}),
            json!({"type": "object", "maxProperties": 10}),
            OK,
        ),
        (
            "maxProperties lowered",
            json!({"type": "object", "maxProperties": 5}),
            json!({"type": "object", "maxProperties": 3}),
            no("MAX_PROPERTIES_DECREASED"),
        ),
        (
            "minProperties added",
            json!({"type": "object"}),
            json!({"type": "object", "minProperties": 1}),
            no("MIN_PROPERTIES_ADDED"),
        ),
        (
            "nested property widened",
            obj(json!({"a": i})),
            obj(json!({"a": n})),
            OK,
        ),
        (
            "nested property narrowed",
            obj(json!({"a": n})),
            obj(json!({"a": i})),
            no("TYPE_NARROWED"),
        ),
        // patternProperties.
        (
            "pattern-closed model opened",
            json!({"type": "object", "patternProperties": {"^s_": s}, "additionalProperties": false}),
            json!({"type": "object"}),
            OK,
        ),
        (
            "pattern added to an open model",
            json!({"type": "object"}),
            json!({"type": "object", "patternProperties": {"^s_": s}}),
            no("TYPE_NARROWED"),
        ),
        (
            "pattern added to a closed model",
            closed(json!({"a": s})),
            json!({"type": "object", "properties": {"a": s}, "patternProperties": {"^s_": s}, "additionalProperties": false}),
            OK,
        ),
        (
            "pattern's schema widened",
            json!({"type": "object", "patternProperties": {"^s_": s}, "additionalProperties": false}),
            json!({"type": "object", "patternProperties": {"^s_": {"type": ["string", "null"]}}, "additionalProperties": false}),
            OK,
        ),
        (
            "pattern's schema narrowed",
            json!({"type": "object", "patternProperties": {"^s_": s}, "additionalProperties": false}),
            json!({"type": "object", "patternProperties": {"^s_": {"type": "string", "maxLength": 3}}, "additionalProperties": false}),
            no("MAX_LENGTH_ADDED"),
        ),
        (
            "disjoint patterns kept, property added",
            json!({"type": "object", "patternProperties": {"^s_": s, "^i_": i}, "additionalProperties": false}),
            json!({"type": "object", "properties": {"x": s}, "patternProperties": {"^s_": s, "^i_": i}, "additionalProperties": false}),
            OK,
        ),
        (
            "pattern removed from a closed model",
            json!({"type": "object", "patternProperties": {"^s_": s}, "additionalProperties": false}),
            json!({"type": "object", "additionalProperties": false}),
            no("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"),
        ),
        (
            "pattern covering a named property",
            closed(json!({"s_a": s})),
            json!({"type": "object", "properties": {"s_a": s}, "patternProperties": {"^s_": s}, "additionalProperties": false}),
            OK,
        ),
        (
            "pattern refusing a named property",
            closed(json!({"s_a": i})),
            json!({"type": "object", "properties": {"s_a": i}, "patternProperties": {"^s_": s}, "additionalProperties": false}),
            no("TYPE_NARROWED"),
        ),
        // Dependencies.
        (
            "dependentRequired added",
            obj(json!({"a": s, "b": s})),
            json!({"type": "object", "properties": {"a": s, "b": s}, "dependentRequired": {"a": ["b"]}}),
            no("DEPENDENCY_ARRAY_ADDED"),
        ),
        (
            "dependentRequired removed",
            json!({"type": "object", "dependentRequired": {"a": ["b"]}}),
            json!({"type": "object"}),
            OK,
        ),
        (
            "dependentRequired narrowed",
            json!({"type": "object", "dependentRequired": {"a": ["b", "c"]}}),
            json!({"type": "object", "dependentRequired": {"a": ["b"]}}),
            OK,
        ),
        (
            "dependentRequired extended",
            json!({"type": "object", "dependentRequired": {"a": ["b"]}}),
            json!({"type": "object", "dependentRequired": {"a": ["b", "c"]}}),
            no("DEPENDENCY_ARRAY_EXTENDED"),
        ),
        (
            "draft-7 dependencies array added",
            draft(D7, json!({"type": "object"})),
            draft(D7, json!({"type": "object", "dependencies": {"a": ["b"]}})),
            no("DEPENDENCY_ARRAY_ADDED"),
        ),
        (
            "dependency the writer already requires",
            json!({"type": "object", "required": ["b"]}),
            json!({"type": "object", "required": ["b"], "dependentRequired": {"a": ["b"]}}),
            OK,
        ),
        (
            "dependentSchemas added",
            json!({"type": "object"}),
            json!({"type": "object", "dependentSchemas": {"a": {"required": ["b"]}}}),
            no("DEPENDENCY_SCHEMA_ADDED"),
        ),
        (
            "dependentSchemas loosened",
            json!({"type": "object", "dependentSchemas": {"a": {"properties": {"b": {"maxLength": 5}}}}}),
            json!({"type": "object", "dependentSchemas": {"a": {"properties": {"b": {"maxLength": 10}}}}}),
            OK,
        ),
        (
            "dependentSchemas tightened",
            json!({"type": "object", "dependentSchemas": {"a": {"properties": {"b": {"maxLength": 10}}}}}),
            json!({"type": "object", "dependentSchemas": {"a": {"properties": {"b": {"maxLength": 5}}}}}),
            no("DEPENDENCY_SCHEMA_CHANGED"),
        ),
        (
            "dependentSchemas removed",
            json!({"type": "object", "dependentSchemas": {"a": {"required": ["b"]}}}),
            json!({"type": "object"}),
            OK,
        ),
        (
            "dependency on a property the writer never has",
            closed(json!({"b": s})),
            json!({"type": "object", "properties": {"b": s}, "additionalProperties": false, "dependentRequired": {"a": ["b"]}}),
            OK,
        ),
        // propertyNames.
        (
            "propertyNames added to an open model",
            json!({"type": "object"}),
            json!({"type": "object", "propertyNames": {"maxLength": 3}}),
            no("PROPERTY_NAMES_NARROWED"),
        ),
        (
            "propertyNames removed",
            json!({"type": "object", "propertyNames": {"maxLength": 3}}),
            json!({"type": "object"}),
            OK,
        ),
        (
            "propertyNames widened",
            json!({"type": "object", "propertyNames": {"maxLength": 3}}),
            json!({"type": "object", "propertyNames": {"maxLength": 5}}),
            OK,
        ),
        (
            "propertyNames narrowed",
            json!({"type": "object", "propertyNames": {"maxLength": 5}}),
            json!({"type": "object", "propertyNames": {"maxLength": 3}}),
            no("PROPERTY_NAMES_NARROWED"),
        ),
        (
            "propertyNames every closed name meets",
            closed(json!({"a": s, "bc": s})),
            json!({"type": "object", "properties": {"a": s, "bc": s}, "additionalProperties": false, "propertyNames": {"pattern": "^[a-z]+$"}}),
            OK,
        ),
        (
            "propertyNames a closed name misses",
            closed(json!({"a": s, "ABC": s})),
            json!({"type": "object", "properties": {"a": s, "ABC": s}, "additionalProperties": false, "propertyNames": {"pattern": "^[a-z]+$"}}),
            no("PROPERTY_NAMES_NARROWED"),
        ),
        // Arrays.
        (
            "items widened",
            json!({"type": "array", "items": i}),
            json!({"type": "array", "items": n}),
            OK,
        ),
        (
            "items narrowed",
            json!({"type": "array", "items": n}),
            json!({"type": "array", "items": i}),
            no("TYPE_NARROWED"),
        ),
        (
            "uniqueItems added",
            json!({"type": "array"}),
            json!({"type": "array", "uniqueItems": true}),
            no("UNIQUE_ITEMS_ADDED"),
        ),
        (
            "uniqueItems removed",
            json!({"type": "array", "uniqueItems": true}),
            json!({"type": "array"}),
            OK,
        ),
        (
            "maxItems lowered",
            json!({"type": "array", "maxItems": 5}),
            json!({"type": "array", "maxItems": 3}),
            no("MAX_ITEMS_DECREASED"),
        ),
        (
            "minItems added",
            json!({"type": "array"}),
            json!({"type": "array", "minItems": 1}),
            no("MIN_ITEMS_ADDED"),
        ),
        (
            "item added to a closed tuple",
            draft(
                D7,
                json!({"type": "array", "items": [s], "additionalItems": false}),
            ),
            draft(
                D7,
                json!({"type": "array", "items": [s, i], "additionalItems": false}),
            ),
            OK,
        ),
        (
            "item added to an open tuple",
            json!({"type": "array", "prefixItems": [s]}),
            json!({"type": "array", "prefixItems": [s, i]}),
            no("TYPE_NARROWED"),
        ),
        (
            "contains added",
            json!({"type": "array"}),
            json!({"type": "array", "contains": i}),
            no("CONTAINS_ADDED"),
        ),
        (
            "contains removed",
            json!({"type": "array", "contains": i}),
            json!({"type": "array"}),
            OK,
        ),
        (
            "contains widened",
            json!({"type": "array", "contains": i}),
            json!({"type": "array", "contains": n}),
            OK,
        ),
        (
            "contains narrowed",
            json!({"type": "array", "contains": n}),
            json!({"type": "array", "contains": i}),
            no("CONTAINS_CHANGED"),
        ),
        (
            "contains met by non-empty integer arrays",
            json!({"type": "array", "items": i, "minItems": 1}),
            json!({"type": "array", "items": i, "minItems": 1, "contains": i}),
            OK,
        ),
        (
            "maxContains within maxItems",
            json!({"type": "array", "maxItems": 2}),
            json!({"type": "array", "maxItems": 2, "contains": {}, "minContains": 0, "maxContains": 2}),
            OK,
        ),
        (
            "maxContains below maxItems",
            json!({"type": "array", "maxItems": 5}),
            json!({"type": "array", "maxItems": 5, "contains": i, "minContains": 0, "maxContains": 2}),
            no("MAX_CONTAINS_DECREASED"),
        ),
        // Combined schemas.
        (
            "oneOf to anyOf",
            json!({"oneOf": [s, i]}),
            json!({"anyOf": [s, i]}),
            OK,
        ),
        (
            "allOf to anyOf",
            json!({"allOf": [n, {"minimum": 0}]}),
            json!({"anyOf": [n, {"minimum": 0}]}),
            OK,
        ),
        (
            "anyOf to oneOf of disjoint branches",
            json!({"anyOf": [s, i]}),
            json!({"oneOf": [s, i]}),
            OK,
        ),
        (
            "anyOf to oneOf of overlapping branches",
            json!({"anyOf": [n, i]}),
            json!({"oneOf": [n, i]}),
            no("COMBINED_TYPE_SUBSCHEMAS_CHANGED"),
        ),
        (
            "sum type extended",
            json!({"anyOf": [s, i]}),
            json!({"anyOf": [s, i, {"type": "null"}]}),
            OK,
        ),
        (
            "sum type narrowed",
            json!({"anyOf": [s, i, {"type": "null"}]}),
            json!({"anyOf": [s, i]}),
            no("COMBINED_TYPE_SUBSCHEMAS_CHANGED"),
        ),
        (
            "product type narrowed",
            json!({"allOf": [s, {"maxLength": 3}]}),
            json!({"allOf": [s]}),
            OK,
        ),
        (
            "product type extended",
            json!({"allOf": [s]}),
            json!({"allOf": [s, {"maxLength": 3}]}),
            no("MAX_LENGTH_ADDED"),
        ),
        (
            "integer into a disjoint oneOf",
            i.clone(),
            json!({"oneOf": [s, i]}),
            OK,
        ),
        (
            "integer into oneOf number|string",
            i.clone(),
            json!({"oneOf": [n, s]}),
            OK,
        ),
        (
            "integer into oneOf number|integer",
            i.clone(),
            json!({"oneOf": [n, i]}),
            no("COMBINED_TYPE_SUBSCHEMAS_CHANGED"),
        ),
        (
            "a variant into a discriminated oneOf",
            json!({"type": "object", "properties": {"kind": {"const": "a"}}, "required": ["kind"]}),
            json!({"oneOf": [
                {"type": "object", "properties": {"kind": {"const": "a"}}, "required": ["kind"]},
                {"type": "object", "properties": {"kind": {"const": "b"}, "x": i}, "required": ["kind"]}]}),
            OK,
        ),
        (
            "writer allOf merged",
            json!({"allOf": [obj(json!({"a": s})), {"required": ["a"]}]}),
            json!({"type": "object", "properties": {"a": s}, "required": ["a"]}),
            OK,
        ),
        (
            "writer union into one type",
            json!({"oneOf": [s, i]}),
            s.clone(),
            no("COMBINED_TYPE_SUBSCHEMAS_CHANGED"),
        ),
        (
            "not added, disjoint from the writer",
            i.clone(),
            json!({"type": "integer", "not": s}),
            OK,
        ),
        (
            "not added to an open writer",
            json!({}),
            json!({"not": s}),
            no("NOT_TYPE_EXTENDED"),
        ),
        (
            "not narrowed",
            json!({"not": {"type": ["string", "null"]}}),
            json!({"not": s}),
            OK,
        ),
        (
            "not extended",
            json!({"not": s}),
            json!({"not": {"type": ["string", "null"]}}),
            no("NOT_TYPE_EXTENDED"),
        ),
        ("not removed", json!({"not": s}), json!({}), OK),
        // Conditionals.
        (
            "if/then added",
            json!({"type": "object"}),
            json!({"type": "object", "if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["x"]}}),
            no("CONDITIONAL_CHANGED"),
        ),
        (
            "if/then removed",
            json!({"type": "object", "if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["x"]}}),
            json!({"type": "object"}),
            OK,
        ),
        (
            "then loosened",
            json!({"type": "object", "if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["x", "y"]}}),
            json!({"type": "object", "if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["x"]}}),
            OK,
        ),
        (
            "then tightened",
            json!({"type": "object", "if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["x"]}}),
            json!({"type": "object", "if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["x", "y"]}}),
            no("CONDITIONAL_CHANGED"),
        ),
        (
            "if/then every writer document meets",
            json!({"type": "object", "required": ["x"]}),
            json!({"type": "object", "required": ["x"], "if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["x"]}}),
            OK,
        ),
        (
            "if changed",
            json!({"type": "object", "if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["x"]}}),
            json!({"type": "object", "if": {"properties": {"kind": {"const": "b"}}}, "then": {"required": ["x"]}}),
            no("CONDITIONAL_CHANGED"),
        ),
        (
            "else added",
            json!({"type": "object", "if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["x"]}}),
            json!({"type": "object", "if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["x"]}, "else": {"required": ["z"]}}),
            no("CONDITIONAL_CHANGED"),
        ),
        // Identifiers and references.
        (
            "$id changed, nothing refers through it",
            json!({"$id": "https://example.com/a.json", "type": "string"}),
            json!({"$id": "https://example.com/b.json", "type": "string"}),
            OK,
        ),
        (
            "$id changed under a relative reference",
            json!({"$id": "https://example.com/a.json", "type": "object", "properties": {"p": {"$ref": "x.json"}}, "$defs": {"x": {"$id": "x.json", "type": "string"}}}),
            json!({"$id": "https://example.org/a.json", "type": "object", "properties": {"p": {"$ref": "x.json"}}, "$defs": {"x": {"$id": "x.json", "type": "string"}}}),
            no("ID_CHANGED"),
        ),
        (
            "referenced definition widened",
            json!({"$defs": {"x": i}, "type": "object", "properties": {"p": {"$ref": "#/$defs/x"}}}),
            json!({"$defs": {"x": n}, "type": "object", "properties": {"p": {"$ref": "#/$defs/x"}}}),
            OK,
        ),
        (
            "referenced definition narrowed",
            json!({"$defs": {"x": n}, "type": "object", "properties": {"p": {"$ref": "#/$defs/x"}}}),
            json!({"$defs": {"x": i}, "type": "object", "properties": {"p": {"$ref": "#/$defs/x"}}}),
            no("TYPE_NARROWED"),
        ),
        (
            "anchored definition narrowed",
            json!({"$defs": {"x": {"$anchor": "x", "type": "string"}}, "type": "object", "properties": {"p": {"$ref": "#x"}}}),
            json!({"$defs": {"x": {"$anchor": "x", "type": "string", "maxLength": 3}}, "type": "object", "properties": {"p": {"$ref": "#x"}}}),
            no("MAX_LENGTH_ADDED"),
        ),
        (
            "anchored definition widened",
            json!({"$defs": {"x": {"$anchor": "x", "type": "integer"}}, "type": "object", "properties": {"p": {"$ref": "#x"}}}),
            json!({"$defs": {"x": {"$anchor": "x", "type": "number"}}, "type": "object", "properties": {"p": {"$ref": "#x"}}}),
            OK,
        ),
        (
            "unevaluatedProperties added",
            json!({"type": "object"}),
            json!({"type": "object", "unevaluatedProperties": false}),
            no("UNSUPPORTED_KEYWORD_CHANGED"),
        ),
        (
            "annotations changed",
            json!({"type": "string", "title": "a", "description": "x"}),
            json!({"type": "string", "title": "b", "description": "y", "examples": ["z"]}),
            OK,
        ),
    ]
}

/// Documents of every shape the table's schemas talk about.
fn samples() -> Vec<Value> {
    let mut v = vec![
        json!(null),
        json!(true),
        json!(false),
        json!(0),
        json!(1),
        json!(-1),
        json!(3),
        json!(4),
        json!(5),
        json!(6),
        json!(9),
        json!(9.5),
        json!(10),
        json!(10.5),
        json!(11),
        json!(20),
        json!(-5.5),
        json!(0.5),
        json!(""),
        json!("a"),
        json!("ab"),
        json!("abc"),
        json!("abcd"),
        json!("s_x"),
        json!("hello world"),
        json!("2020-01-01"),
        json!([]),
        json!([1]),
        json!([1, 1]),
        json!([1, 2, 3]),
        json!([1.5]),
        json!(["a"]),
        json!(["a", 1]),
        json!([1, "a"]),
        json!(["a", "b"]),
        json!([1, 2, 3, 4]),
        json!([1, 2, 3, 4, 5, 6]),
        json!({}),
        json!("b"),
    ];
    for doc in [
        json!({"a": "x"}),
        json!({"a": 1}),
        json!({"b": 1}),
        json!({"a": "x", "b": 1}),
        json!({"a": "x", "b": "y"}),
        json!({"kind": "a"}),
        json!({"kind": "a", "x": 1}),
        json!({"kind": "b", "x": 1}),
        json!({"kind": "a", "x": 1, "y": 2}),
        json!({"s_1": "x"}),
        json!({"s_1": "abcd"}),
        json!({"s_1": 1}),
        json!({"i_1": 1}),
        json!({"i_1": "x"}),
        json!({"a": null}),
        json!({"x": "y"}),
        json!({"z": 1}),
        json!({"ABC": 1}),
        json!({"a": "x", "ABC": "y"}),
        json!({"a": "x", "bc": "y"}),
        json!({"p": 1}),
        json!({"p": 1.5}),
        json!({"p": "abcd"}),
        json!({"p": "ab"}),
        json!({"s_a": "x"}),
        json!({"s_a": 1}),
        json!({"a": 1, "c": 2}),
        json!({"a": {"b": "abcdefgh"}}),
        json!({"a": 1, "b": "abcdefgh"}),
        json!({"a": 1, "b": "abc"}),
        json!({"longname": 1}),
        json!({"kind": "b"}),
        json!({"a": 1.5}),
        json!({"a": 1, "b": 2, "c": 3, "d": 4}),
    ] {
        v.push(doc);
    }
    v
}

#[test]
fn the_rules_table() {
    let table = cases();
    assert!(table.len() >= 100, "{} cases", table.len());
    let samples = samples();
    let mut wrong = vec![];
    for (name, writer, reader, expected) in &table {
        let (w, r) = (
            JsonSchema::parse(&writer.to_string(), &[])
                .unwrap_or_else(|e| panic!("{name}: writer: {e}")),
            JsonSchema::parse(&reader.to_string(), &[])
                .unwrap_or_else(|e| panic!("{name}: reader: {e}")),
        );
        let found: Vec<&str> = can_read(&r, &w, &Budget::new(10_000_000))
            .into_iter()
            .map(|i| i.kind)
            .collect();
        match expected {
            None if !found.is_empty() => {
                wrong.push(format!("{name}: expected compatible, got {found:?}"))
            }
            Some(kind) if !found.contains(kind) => {
                wrong.push(format!("{name}: expected {kind}, got {found:?}"))
            }
            _ => {}
        }
        if expected.is_none() {
            // A compatible verdict must hold for every sample the writer accepts.
            let (wv, rv) = (
                jsonschema::validator_for(writer).unwrap(),
                jsonschema::validator_for(reader).unwrap(),
            );
            for doc in &samples {
                if wv.is_valid(doc) && !rv.is_valid(doc) {
                    wrong.push(format!(
                        "{name}: called compatible, but the reader refuses {doc}"
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} rows wrong:\n{}",
        wrong.len(),
        table.len(),
        wrong.join("\n")
    );
}

#[test]
fn every_incompatible_row_has_a_witness_or_is_a_known_caution() {
    // Rows the checker refuses although no sample breaks them are where it is cautious on
    // purpose (it cannot prove them safe); everything else refused has a document to show.
    let samples = samples();
    let mut unproven = vec![];
    for (name, writer, reader, expected) in cases() {
        if expected.is_none() {
            continue;
        }
        let (wv, rv) = (
            jsonschema::validator_for(&writer).unwrap(),
            jsonschema::validator_for(&reader).unwrap(),
        );
        if !samples.iter().any(|d| wv.is_valid(d) && !rv.is_valid(d)) {
            unproven.push(name);
        }
    }
    unproven.sort_unstable();
    assert_eq!(
        unproven,
        // `format` is only an annotation to a 2020-12 validator by default, but a reader may
        // assert it; a changed `$id` breaks readers only where references resolve elsewhere.
        ["$id changed under a relative reference", "format added"],
        "rows refused without a sample to show why"
    );
}
