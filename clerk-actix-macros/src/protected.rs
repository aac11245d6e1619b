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

const KEYS: [&str; 8] = [
    "role",
    "permission",
    "feature",
    "plan",
    "reverification",
    "any",
    "all",
    "crate",
];

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
    krate: &mut Option<Path>,
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
                    *krate = path;
                }
                Some(key @ ("role" | "permission" | "feature" | "plan" | "reverification")) => {
                    if let Some(value) = errors.handle(string_value(&nv.value)) {
                        if errors.handle(validate(key, &value)).is_some() {
                            rules.push(Rule::Check { key, value });
                        }
                    }
                }
                Some("crate") => errors.push(
                    Error::custom("`crate = ...` goes at the top level of #[clerk_protected]")
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
                    let children = parse_list(inner, false, krate, errors);
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
    let mut krate = None;
    let rules = metas
        .map(|m| parse_list(m, true, &mut krate, &mut errors))
        .unwrap_or_default();

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

    let krate = match krate {
        Some(path) => quote!(#path),
        None => quote!(::clerk_actix),
    };
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
        ] {
            let out = errors_of(args.clone());
            assert!(out.contains("compile_error"), "{args}");
            assert!(out.contains(needle), "{args}: {out}");
        }
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
