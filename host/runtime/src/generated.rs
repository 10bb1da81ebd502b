//! The host side of the `sluice:gateway` WIT package: one `bindgen!` per world, sharing the
//! imported interfaces and types of the first. Only what the host uses is re-exported.

mod validator {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "validator",
        additional_derives: [PartialEq],
    });
}

mod with_shared {
    // The other worlds reuse the validator world's types and import traits, so one set of host
    // implementations and one Rust `Event` type serve every stage.
    macro_rules! world {
        ($module:ident, $world:literal) => {
            pub mod $module {
                wasmtime::component::bindgen!({
                    path: "../../wit",
                    world: $world,
                    additional_derives: [PartialEq],
                    with: {
                        "sluice:gateway/types": super::super::validator::sluice::gateway::types,
                        "sluice:gateway/logging": super::super::validator::sluice::gateway::logging,
                        "sluice:gateway/clock": super::super::validator::sluice::gateway::clock,
                        "sluice:gateway/schemas": super::super::validator::sluice::gateway::schemas,
                        "sluice:gateway/reference-tables": super::super::validator::sluice::gateway::reference_tables,
                    },
                });
            }
        };
    }
    world!(packed_validator, "packed-validator");
    world!(enricher, "enricher");
    world!(packed_enricher, "packed-enricher");
    world!(router, "router");
    world!(packed_router, "packed-router");
    world!(transformer, "transformer");
    world!(ingress_gateway, "ingress-gateway");
    world!(compaction_policy, "compaction-policy");
}

pub use validator::sluice::gateway::logging::Level as LogLevel;
pub use validator::sluice::gateway::schemas::{Schema, SchemaType};
pub use validator::sluice::gateway::types as types_host;
pub use validator::sluice::gateway::types::{
    BatchContext, DeadLetter, Decision, Destination, Event, Header, PackedEvent, Rejection, Span,
    Verdict, Violation,
};
pub use validator::sluice::gateway::{clock, logging, reference_tables, schemas};
pub use validator::{Validator, ValidatorPre};
pub use with_shared::compaction_policy::exports::sluice::gateway::compactor::{
    Candidate, CompactionContext, KeyGroup,
};
pub use with_shared::compaction_policy::{CompactionPolicy, CompactionPolicyPre};
pub use with_shared::enricher::{Enricher, EnricherPre};
pub use with_shared::ingress_gateway::exports::sluice::gateway::ingress::{
    Accepted, HttpRequest, Refusal,
};
pub use with_shared::ingress_gateway::{IngressGateway, IngressGatewayPre};
pub use with_shared::packed_enricher::exports::sluice::gateway::enrich_packed::{
    Change, Enriched, Insertion,
};
pub use with_shared::packed_enricher::{PackedEnricher, PackedEnricherPre};
pub use with_shared::packed_router::{PackedRouter, PackedRouterPre};
pub use with_shared::packed_validator::{PackedValidator, PackedValidatorPre};
pub use with_shared::router::{Router, RouterPre};
pub use with_shared::transformer::exports::sluice::gateway::transform::Output;
pub use with_shared::transformer::{Transformer, TransformerPre};
