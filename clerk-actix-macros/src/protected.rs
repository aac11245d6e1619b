//! `#[clerk_protected(...)]`: parse → validate → expand. Every mistake is collected and reported
//! at the offending token; on error the handler is emitted unchanged next to the errors, so one
//! mistake gives one message.

use darling::{Error, Result};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{
    parse::Parser, punctuated::Punctuated, Expr, ExprLit, FnArg, ItemFn, Lit, LitStr, Meta, Path,
    Token,
};

const KEYS: [&str; 10] = [
    "role",
    "permission",
    "feature",
    "plan",
    "reverification",
    "scope",
    "accepts_token",
    "any",
    "all",
    "crate",
];

/// The checks that read a session's claims (a machine token has none of these).
const SESSION_CHECKS: [&str; 5] = ["role", "permission", "feature", "plan", "reverification"];

/// Clerk's `acceptsToken` names and the `TokenTypes` constants they stand for.
const TOKEN_TYPES: [(&str, &str); 5] = [
    ("session_token", "SESSION"),
    ("api_key", "API_KEY"),
    ("m2m_token", "M2M"),
    ("oauth_token", "OAUTH"),
    ("any", "ANY"),
];

/// The attribute's top-level settings.
#[derive(Default)]
struct TopLevel {
    krate: Option<Path>,
    /// The accepted token types (`TokenTypes` constants), when the handler opts in.
    accepts: Option<Vec<&'static str>>,
}

impl TopLevel {
    fn accepts_sessions(&self) -> bool {
        self.accepts
            .as_ref()
            .is_none_or(|a| a.iter().any(|t| matches!(*t, "SESSION" | "ANY")))
    }

    fn accepts_machines(&self) -> bool {
        self.accepts
            .as_ref()
            .is_some_and(|a| a.iter().any(|t| *t != "SESSION"))
    }
}

/// `accepts_token = "api_key"` or `accepts_token = ["api_key", "m2m_token"]`.
fn parse_accepts(expr: &Expr) -> Result<Vec<&'static str>> {
    let literals: Vec<&Expr> = match expr {
        Expr::Array(array) => array.elems.iter().collect(),
        other => vec![other],
    };
    if literals.is_empty() {
        return Err(Error::custom(
            "`accepts_token` needs at least one token type, e.g. `accepts_token = \"api_key\"`",
        )
        .with_span(expr));
    }
    let mut errors = Error::accumulator();
    let mut types = Vec::new();
    for lit in literals {
        let Some(value) = errors.handle(string_value(lit)) else {
            continue;
        };
        match TOKEN_TYPES.iter().find(|(name, _)| *name == value.value()) {
            Some((_, constant)) => types.push(*constant),
            None => errors.push(
                Error::custom(
                    "a token type is \"session_token\", \"api_key\", \"m2m_token\", \"oauth_token\" or \"any\"",
                )
                .with_span(&value),
            ),
        }
    }
    errors.finish_with(types)
}

/// Clerk's reverification presets and what they mean, as `Reverification` variants.
const REVERIFICATION_PRESETS: [(&str, &str); 4] = [
    ("strict_mfa", "StrictMfa"),
    ("strict", "Strict"),
    ("moderate", "Moderate"),
    ("lax", "Lax"),
];
/// Levels of a custom reverification (`"<level>:<minutes>"`), as `VerificationLevel` variants.
const REVERIFICATION_LEVELS: [(&str, &str); 3] = [
    ("first_factor", "FirstFactor"),
    ("second_factor", "SecondFactor"),
    ("multi_factor", "MultiFactor"),
];

/// Strips any leading `org:` prefixes, as Clerk's `prefixWithOrg` does before adding one.
fn without_org_prefix(value: &str) -> &str {
    let mut bare = value;
    while let Some(rest) = bare.strip_prefix("org:") {
        bare = rest;
    }
    bare
}

/// A reverification value: a preset, or `"<level>:<minutes>"` with minutes > 0.
fn parse_reverification(value: &str) -> Option<(&'static str, Option<u32>)> {
    if let Some((_, variant)) = REVERIFICATION_PRESETS.iter().find(|(k, _)| *k == value) {
        return Some((variant, None));
    }
    let (level, minutes) = value.split_once(':')?;
    let (_, variant) = REVERIFICATION_LEVELS.iter().find(|(k, _)| *k == level)?;
    let minutes: u32 = minutes.parse().ok().filter(|m| *m > 0)?;
    Some((variant, Some(minutes)))
}

/// A parsed requirement.
enum Rule {
    Check { key: &'static str, value: LitStr },
    All(Vec<Rule>),
    Any(Vec<Rule>),
}

fn string_value(expr: &Expr) -> Result<LitStr> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.clone()),
        other => {
            Err(Error::custom("expected a string literal, e.g. \"org:admin\"").with_span(other))
        }
    }
}

fn validate(key: &'static str, lit: &LitStr) -> Result<()> {
    let value = lit.value();
    let bad = |msg: String| Err(Error::custom(msg).with_span(lit));
    if value.trim().is_empty() || value.contains(char::is_whitespace) {
        return bad(format!("`{key}` must be a non-empty value without spaces"));
    }
    match key {
        // Clerk's has() reads "admin" and "org:admin" alike.
        "role" => match without_org_prefix(&value) {
            rest if !rest.is_empty() && !rest.contains(':') => Ok(()),
            _ => bad("a role looks like \"org:admin\" (or \"admin\": the `org:` prefix is optional)".into()),
        },
        "permission" => {
            let parts: Vec<&str> = without_org_prefix(&value).split(':').collect();
            match parts.as_slice() {
                [feature, permission] if !feature.is_empty() && !permission.is_empty() => Ok(()),
                _ => bad(
                    "permissions look like \"org:<feature>:<permission>\", e.g. \"org:invoices:read\" (the `org:` prefix is optional)"
                        .into(),
                ),
            }
        }
        // OAuth and API key scopes are free-form (`read:reports`, `openid`, ...).
        "scope" => Ok(()),
        "reverification" => match parse_reverification(&value) {
            Some(_) => Ok(()),
            None => bad(
                "reverification is \"strict_mfa\", \"strict\", \"moderate\", \"lax\", or \"<level>:<minutes>\" with level first_factor, second_factor or multi_factor (e.g. \"second_factor:30\")"
                    .into(),
            ),
        },
        _ => match value.split_once(':') {
            None => Ok(()),
            Some((scope, id))
                if !id.is_empty()
                    && ["o", "org", "organization", "u", "user"].contains(&scope) =>
            {
                Ok(())
            }
            Some(_) => bad(format!(
                "a {key} is `name`, `org:name` or `user:name` (scopes: o, org, organization, u, user)"
            )),
        },
    }
}

fn key_of(path: &Path) -> Option<&'static str> {
    KEYS.into_iter().find(|k| path.is_ident(k))
}

fn unknown(path: &Path) -> Error {
    let name = path
        .get_ident()
        .map_or_else(|| quote!(#path).to_string(), ToString::to_string);
    Error::unknown_field_with_alts(&name, &KEYS).with_span(path)
}

/// Parses a list of requirements (the attribute's arguments or the inside of `any(...)`).
fn parse_list(
    metas: Punctuated<Meta, Token![,]>,
    top_level: bool,
    top: &mut TopLevel,
    errors: &mut darling::error::Accumulator,
) -> Vec<Rule> {
    let mut rules = Vec::new();
    for meta in metas {
        match &meta {
            Meta::NameValue(nv) => match key_of(&nv.path) {
                Some("crate") if top_level => {
                    let path = match &nv.value {
                        Expr::Path(p) => Some(p.path.clone()),
                        Expr::Lit(ExprLit {
                            lit: Lit::Str(s), ..
                        }) => errors.handle(s.parse::<Path>().map_err(Error::from)),
                        other => {
                            errors.push(
                                Error::custom("expected a path, e.g. `crate = my_clerk`")
                                    .with_span(other),
                            );
                            None
                        }
                    };
                    top.krate = path;
                }
                Some("accepts_token") if top_level => {
                    if top.accepts.is_some() {
                        errors.push(
                            Error::custom("`accepts_token` is given twice: list every type once, e.g. `accepts_token = [\"api_key\", \"m2m_token\"]`")
                                .with_span(&nv.path),
                        );
                    } else if let Some(types) = errors.handle(parse_accepts(&nv.value)) {
                        top.accepts = Some(types);
                    }
                }
                Some(
                    key @ ("role" | "permission" | "feature" | "plan" | "reverification" | "scope"),
                ) => {
                    if let Some(value) = errors.handle(string_value(&nv.value)) {
                        if errors.handle(validate(key, &value)).is_some() {
                            rules.push(Rule::Check { key, value });
                        }
                    }
                }
                Some(key @ ("crate" | "accepts_token")) => errors.push(
                    Error::custom(format!(
                        "`{key} = ...` goes at the top level of #[clerk_protected]"
                    ))
                    .with_span(&nv.path),
                ),
                Some(key) => errors.push(
                    Error::custom(format!(
                        "`{key}` takes a list: `{key}(role = \"...\", ...)`"
                    ))
                    .with_span(&nv.path),
                ),
                None => errors.push(unknown(&nv.path)),
            },
            Meta::List(list) => match key_of(&list.path) {
                Some(key @ ("any" | "all")) => {
                    let inner = errors.handle(
                        Punctuated::<Meta, Token![,]>::parse_terminated
                            .parse2(list.tokens.clone())
                            .map_err(Error::from),
                    );
                    let Some(inner) = inner else { continue };
                    if inner.is_empty() {
                        errors.push(
                            Error::custom(format!("`{key}()` needs at least one requirement"))
                                .with_span(&list.path),
                        );
                        continue;
                    }
                    let children = parse_list(inner, false, top, errors);
                    rules.push(if key == "any" {
                        Rule::Any(children)
                    } else {
                        Rule::All(children)
                    });
                }
                Some(key) => errors
                    .push(Error::custom(format!("use `{key} = \"...\"`")).with_span(&list.path)),
                None => errors.push(unknown(&list.path)),
            },
            Meta::Path(path) => match key_of(path) {
                Some(key) => {
                    errors.push(Error::custom(format!("`{key}` needs a value")).with_span(path))
                }
                None => errors.push(unknown(path)),
            },
        }
    }
    rules
}

fn rule_tokens(rule: &Rule, krate: &TokenStream) -> TokenStream {
    match rule {
        Rule::Check {
            key: "reverification",
            value,
        } => {
            let level = match parse_reverification(&value.value()) {
                Some((preset, None)) => {
                    let preset = format_ident!("{}", preset);
                    quote!(#krate::Reverification::#preset)
                }
                Some((level, Some(minutes))) => {
                    let level = format_ident!("{}", level);
                    quote!(#krate::Reverification::Custom {
                        level: #krate::VerificationLevel::#level,
                        after_minutes: #minutes,
                    })
                }
                // Validated when parsed.
                None => quote!(#krate::Reverification::StrictMfa),
            };
            quote!(#krate::guard::Rule::Check(#krate::Has::reverification(#level)))
        }
        Rule::Check {
            key: "scope",
            value,
        } => quote!(#krate::guard::Rule::Scope(#value)),
        Rule::Check { key, value } => {
            let ctor = format_ident!("{}", key);
            quote!(#krate::guard::Rule::Check(#krate::Has::#ctor(#value)))
        }
        Rule::All(children) => {
            let c = children.iter().map(|r| rule_tokens(r, krate));
            quote!(#krate::guard::Rule::All(&[#(#c),*]))
        }
        Rule::Any(children) => {
            let c = children.iter().map(|r| rule_tokens(r, krate));
            quote!(#krate::guard::Rule::Any(&[#(#c),*]))
        }
    }
}

/// Every `key = "value"` check in `rules`, nested ones included.
fn checks<'r>(rules: &'r [Rule], out: &mut Vec<(&'static str, &'r LitStr)>) {
    for rule in rules {
        match rule {
            Rule::Check { key, value } => out.push((key, value)),
            Rule::All(children) | Rule::Any(children) => checks(children, out),
        }
    }
}

/// Checks that can never hold for the accepted token types are mistakes: a `scope` on a
/// sessions-only handler, a `role` (...) on a machine-only one.
fn check_token_types(rules: &[Rule], top: &TopLevel, errors: &mut darling::error::Accumulator) {
    let mut all = Vec::new();
    checks(rules, &mut all);
    for (key, value) in all {
        if key == "scope" && !top.accepts_machines() {
            errors.push(
                Error::custom(
                    "`scope` checks machine tokens, and this handler accepts session tokens only: add e.g. `accepts_token = \"api_key\"` (or \"m2m_token\", \"oauth_token\", \"any\")",
                )
                .with_span(value),
            );
        } else if SESSION_CHECKS.contains(&key) && !top.accepts_sessions() {
            errors.push(
                Error::custom(format!(
                    "`{key}` checks sessions, and this handler accepts machine tokens only: add \"session_token\" to `accepts_token`, or check a `scope`"
                ))
                .with_span(value),
            );
        }
    }
}

/// FNV-1a of the arguments and the parameter count: a stable, distinct suffix per attribute.
/// Stacked attributes expand outermost first and each adds a parameter, so even two identical
/// attributes get distinct guards.
fn fingerprint(args: &TokenStream, inputs: usize) -> u32 {
    args.to_string()
        .bytes()
        .chain(inputs.to_le_bytes())
        .fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        })
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Error::accumulator();
    let metas = errors.handle(
        Punctuated::<Meta, Token![,]>::parse_terminated
            .parse2(args.clone())
            .map_err(Error::from),
    );
    let mut top = TopLevel::default();
    let rules = metas
        .map(|m| parse_list(m, true, &mut top, &mut errors))
        .unwrap_or_default();
    check_token_types(&rules, &top, &mut errors);

    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            errors.push(
                Error::custom("#[clerk_protected] goes on an `async fn` handler")
                    .with_span(&Span::call_site()),
            );
            let errs = errors.finish().err().map(Error::write_errors);
            return quote!(#item #errs);
        }
    };
    if func.sig.asyncness.is_none() {
        errors.push(
            Error::custom("#[clerk_protected] needs an `async fn` handler")
                .with_span(&func.sig.fn_token),
        );
    }
    if let Some(FnArg::Receiver(recv)) = func.sig.inputs.first() {
        errors.push(
            Error::custom("#[clerk_protected] handlers are free functions: remove `self`")
                .with_span(recv),
        );
    }
    if let Err(e) = errors.finish() {
        let errs = e.write_errors();
        return quote!(#item #errs);
    }

    let krate = match &top.krate {
        Some(path) => quote!(#path),
        None => quote!(::clerk_actix),
    };
    let accepts = top.accepts.as_ref().map(|types| {
        let mut constants = types.iter().map(|t| format_ident!("{}", t));
        let first = constants.next();
        quote!(const ACCEPTS: #krate::TokenTypes = #krate::TokenTypes::#first #(.with(#krate::TokenTypes::#constants))*;)
    });
    let rule = match rules.as_slice() {
        [] => quote!(#krate::guard::Rule::Authenticated),
        [one] => rule_tokens(one, &krate),
        many => {
            let c = many.iter().map(|r| rule_tokens(r, &krate));
            quote!(#krate::guard::Rule::All(&[#(#c),*]))
        }
    };

    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
    } = func;
    let suffix = fingerprint(&args, sig.inputs.len());
    let requirement = format_ident!("__ClerkRequirement_{}_{:08x}", sig.ident, suffix);
    let guard = format_ident!("__clerk_guard_{:08x}", suffix);
    let span = sig.ident.span();
    let param: FnArg = syn::parse_quote_spanned! {span=>
        #guard: #krate::guard::Protected<#requirement>
    };
    sig.inputs.insert(0, param);
    let requirement_def = quote_spanned! {span=>
        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #vis struct #requirement;
        impl #krate::guard::Requirement for #requirement {
            const RULE: #krate::guard::Rule = #rule;
            #accepts
        }
    };
    quote! {
        #requirement_def
        #(#attrs)*
        #vis #sig #block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(args: TokenStream) -> String {
        let out = expand(
            args,
            quote!(
                async fn h() -> &'static str {
                    "x"
                }
            ),
        );
        out.to_string()
    }

    #[test]
    fn valid_arguments_expand_without_errors() {
        for args in [
            quote!(),
            quote!(role = "org:admin"),
            quote!(
                permission = "org:invoices:read",
                feature = "o:billing",
                plan = "pro"
            ),
            quote!(any(
                role = "org:admin",
                all(permission = "org:a:b", plan = "user:pro")
            )),
            quote!(crate = my_clerk),
            quote!(role = "admin", permission = "invoices:read"),
            quote!(reverification = "strict"),
            quote!(reverification = "multi_factor:30"),
            quote!(accepts_token = "api_key"),
            quote!(
                accepts_token = ["api_key", "m2m_token"],
                scope = "read:reports"
            ),
            quote!(
                accepts_token = ["session_token", "oauth_token"],
                any(role = "org:admin", scope = "openid")
            ),
            quote!(accepts_token = "any", scope = "x"),
        ] {
            let out = errors_of(args.clone());
            assert!(!out.contains("compile_error"), "{args}: {out}");
        }
    }

    #[test]
    fn mistakes_are_compile_errors() {
        for (args, needle) in [
            (quote!(rol = "org:admin"), "role"),
            (quote!(role = "org:admin:x"), "org:admin"),
            (quote!(reverification = "sometimes"), "strict_mfa"),
            (
                quote!(reverification = "second_factor:0"),
                "<level>:<minutes>",
            ),
            (
                quote!(permission = "invoices"),
                "org:<feature>:<permission>",
            ),
            (quote!(any()), "at least one"),
            (quote!(role = 5), "string literal"),
            (quote!(feature = "lol:x"), "scopes"),
            (quote!(accepts_token = "api_keys"), "m2m_token"),
            (quote!(accepts_token = []), "at least one token type"),
            (
                quote!(accepts_token = "api_key", accepts_token = "m2m_token"),
                "twice",
            ),
            (quote!(any(accepts_token = "api_key")), "top level"),
            (quote!(scope = "read"), "session tokens only"),
            (
                quote!(accepts_token = "api_key", role = "org:admin"),
                "machine tokens only",
            ),
            (quote!(accepts_token = "m2m_token", scope = ""), "non-empty"),
        ] {
            let out = errors_of(args.clone());
            assert!(out.contains("compile_error"), "{args}");
            assert!(out.contains(needle), "{args}: {out}");
        }
    }

    #[test]
    fn accepted_token_types_become_a_const() {
        let out = errors_of(quote!(accepts_token = ["api_key", "m2m_token"]));
        let squashed: String = out.split_whitespace().collect();
        assert!(
            squashed.contains("constACCEPTS:::clerk_actix::TokenTypes=::clerk_actix::TokenTypes::API_KEY.with(::clerk_actix::TokenTypes::M2M);"),
            "{out}"
        );
        assert!(!errors_of(quote!(role = "admin")).contains("ACCEPTS"));
    }

    #[test]
    fn stacked_attributes_get_distinct_guards() {
        assert_ne!(
            fingerprint(&quote!(role = "org:admin"), 0),
            fingerprint(&quote!(role = "org:member"), 0)
        );
        assert_ne!(
            fingerprint(&quote!(role = "org:admin"), 0),
            fingerprint(&quote!(role = "org:admin"), 1)
        );
    }
}
