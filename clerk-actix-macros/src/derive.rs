//! `#[derive(ClerkUser)]`: maps fields of a user's diesel model to Clerk's user data and
//! generates the upsert / find / deactivate / delete queries for PostgreSQL and SQLite. A model
//! must map `is_active` (fail closed: activity is what refuses banned and deleted users).

use darling::{Error, Result};
use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{
    punctuated::Punctuated, spanned::Spanned, Data, DeriveInput, Expr, Fields, Meta, Path, Token,
};

/// Keys of `#[clerk(...)]` and the Clerk value each one takes, as an expression over
/// `__clerk_data: &ClerkUserData`.
const KEYS: [&str; 22] = [
    "id",
    "email",
    "username",
    "first_name",
    "last_name",
    "image_url",
    "phone",
    "external_id",
    "last_active_at",
    "last_sign_in_at",
    "is_active",
    "banned",
    "locked",
    "public_metadata",
    "private_metadata",
    "unsafe_metadata",
    "created_at",
    "updated_at",
    "synced_at",
    "with",
    "crate",
    "skip",
];

fn value_expr(key: &str, krate: &TokenStream) -> TokenStream {
    match key {
        // When the row is written from Clerk's data: now.
        "synced_at" => quote!(#krate::store::now_ms()),
        "id" => quote!(__clerk_data.id.clone()),
        "email" => quote!(__clerk_data
            .primary_email()
            .map(::std::borrow::ToOwned::to_owned)),
        "phone" => quote!(__clerk_data
            .primary_phone()
            .map(::std::borrow::ToOwned::to_owned)),
        "is_active" => quote!(__clerk_data.is_active()),
        other => {
            let f = format_ident!("{}", other);
            quote!(::std::clone::Clone::clone(&__clerk_data.#f))
        }
    }
}

/// The type of the Clerk value each key takes.
fn value_type(key: &str, krate: &TokenStream) -> TokenStream {
    match key {
        "id" => quote!(::std::string::String),
        "last_active_at" | "last_sign_in_at" => quote!(::std::option::Option<i64>),
        "created_at" | "updated_at" | "synced_at" => quote!(i64),
        "is_active" | "banned" | "locked" => quote!(bool),
        "public_metadata" | "private_metadata" | "unsafe_metadata" => {
            quote!(#krate::__private::serde_json::Value)
        }
        _ => quote!(::std::option::Option<::std::string::String>),
    }
}

enum Mapping {
    Key(&'static str),
    With(Path),
}

struct MappedField {
    ident: Ident,
    ty: syn::Type,
    column: Ident,
    mapping: Mapping,
    span: proc_macro2::Span,
}

/// `#[diesel(<name> = <path>)]` on an item.
fn diesel_value(attrs: &[syn::Attribute], name: &str) -> Option<Expr> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("diesel"))
        .filter_map(|a| {
            a.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
                .ok()
        })
        .flatten()
        .find_map(|m| match m {
            Meta::NameValue(nv) if nv.path.is_ident(name) => Some(nv.value),
            _ => None,
        })
}

fn parse_field_attr(
    attr: &syn::Attribute,
    errors: &mut darling::error::Accumulator,
) -> Option<Mapping> {
    let metas = errors.handle(
        attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
            .map_err(Error::from),
    )?;
    let mut mapping = None;
    for meta in metas {
        let found = match &meta {
            Meta::Path(p) => match KEYS.iter().find(|k| p.is_ident(k)) {
                Some(&"with") => {
                    errors.push(Error::custom("use `with = path::to::fn`").with_span(p));
                    None
                }
                Some(&"crate") | Some(&"skip") => {
                    errors.push(Error::custom("not a field mapping").with_span(p));
                    None
                }
                Some(k) => Some(Mapping::Key(k)),
                None => {
                    let name = p.get_ident().map(ToString::to_string).unwrap_or_default();
                    errors.push(Error::unknown_field_with_alts(&name, &KEYS[..19]).with_span(p));
                    None
                }
            },
            Meta::NameValue(nv) if nv.path.is_ident("with") => match &nv.value {
                Expr::Path(p) => Some(Mapping::With(p.path.clone())),
                other => {
                    errors.push(
                        Error::custom("`with` takes a function path: fn(&ClerkUserData) -> T")
                            .with_span(other),
                    );
                    None
                }
            },
            other => {
                errors.push(
                    Error::custom("expected a key such as `email`, or `with = path`")
                        .with_span(other),
                );
                None
            }
        };
        if let Some(found) = found {
            if mapping.is_some() {
                errors.push(Error::custom("one mapping per field").with_span(&meta));
            } else {
                mapping = Some(found);
            }
        }
    }
    mapping
}

pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(i) => i,
        Err(e) => return e.to_compile_error(),
    };
    match expand_inner(&input) {
        Ok(tokens) => tokens,
        Err(e) => e.write_errors(),
    }
}

fn expand_inner(input: &DeriveInput) -> Result<TokenStream> {
    let mut errors = Error::accumulator();
    let model = &input.ident;
    let fields = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(named) => Some(&named.named),
            _ => None,
        },
        _ => None,
    };
    let Some(fields) = fields else {
        errors.push(
            Error::custom("#[derive(ClerkUser)] needs a struct with named fields").with_span(model),
        );
        return errors.finish().map(|()| TokenStream::new());
    };
    // `#[clerk(crate = path)]` on the struct for a renamed dependency.
    let mut krate = quote!(::clerk_actix);
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("clerk")) {
        let metas = errors.handle(
            attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
                .map_err(Error::from),
        );
        for meta in metas.into_iter().flatten() {
            match meta {
                Meta::NameValue(nv) if nv.path.is_ident("crate") => match &nv.value {
                    Expr::Path(p) => {
                        let p = &p.path;
                        krate = quote!(#p);
                    }
                    Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(s),
                        ..
                    }) => {
                        if let Some(p) = errors.handle(s.parse::<Path>().map_err(Error::from)) {
                            krate = quote!(#p);
                        }
                    }
                    other => errors.push(
                        Error::custom("expected a path, e.g. `crate = my_clerk`").with_span(other),
                    ),
                },
                other => errors.push(
                    Error::custom("on the struct, #[clerk] takes only `crate = path`")
                        .with_span(&other),
                ),
            }
        }
    }
    let table = diesel_value(&input.attrs, "table_name");
    if table.is_none() {
        errors.push(
            Error::custom(
                "add #[diesel(table_name = your_table)]: the derive writes to that table",
            )
            .with_span(model),
        );
    }

    let mut mapped = Vec::new();
    for field in fields {
        let Some(ident) = field.ident.clone() else {
            continue;
        };
        let clerk_attrs: Vec<_> = field
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("clerk"))
            .collect();
        let mut mapping = None;
        for attr in clerk_attrs {
            if let Some(m) = parse_field_attr(attr, &mut errors) {
                if mapping.is_some() {
                    errors.push(Error::custom("one mapping per field").with_span(attr));
                } else {
                    mapping = Some(m);
                }
            }
        }
        let Some(mapping) = mapping else { continue };
        let column = match diesel_value(&field.attrs, "column_name") {
            Some(Expr::Path(p)) => p.path.get_ident().cloned().unwrap_or_else(|| ident.clone()),
            _ => ident.clone(),
        };
        mapped.push(MappedField {
            span: field.ty.span(),
            ident,
            ty: field.ty.clone(),
            column,
            mapping,
        });
    }

    let ids: Vec<&MappedField> = mapped
        .iter()
        .filter(|f| matches!(f.mapping, Mapping::Key("id")))
        .collect();
    match ids.as_slice() {
        [] => errors.push(
            Error::custom("mark the field holding Clerk's user id with #[clerk(id)]")
                .with_span(model),
        ),
        [_] => {}
        [_, rest @ ..] => {
            for extra in rest {
                errors.push(
                    Error::custom("only one field can be #[clerk(id)]").with_span(&extra.ident),
                );
            }
        }
    }
    // Fail closed: without an activity field a banned, locked or deleted user would pass.
    if !mapped
        .iter()
        .any(|f| matches!(f.mapping, Mapping::Key("is_active")))
    {
        errors.push(
            Error::custom(
                "map `is_active`: add a `bool` field marked #[clerk(is_active)] (a column with \
                 Clerk's `!banned && !locked`, set false when the user is deleted); without it \
                 banned, locked and deleted users would be let in",
            )
            .with_span(model),
        );
    }
    for key in KEYS.iter().take(19) {
        let same: Vec<_> = mapped
            .iter()
            .filter(|f| matches!(f.mapping, Mapping::Key(k) if k == *key))
            .collect();
        if *key != "id" && same.len() > 1 {
            for extra in &same[1..] {
                errors.push(
                    Error::custom(format!("`{key}` is already mapped to `{}`", same[0].ident))
                        .with_span(&extra.ident),
                );
            }
        }
    }
    errors.finish()?;
    let Some(table) = table else {
        unreachable!("checked above")
    };
    let Some(id_field) = ids.first() else {
        unreachable!("checked above")
    };

    let column_of = |key: &str| {
        mapped
            .iter()
            .find(|f| matches!(f.mapping, Mapping::Key(k) if k == key))
            .map(|f| f.column.clone())
    };
    let id_column = &id_field.column;
    let updated_at = column_of("updated_at");
    let field_of = |key: &str| {
        mapped
            .iter()
            .find(|f| matches!(f.mapping, Mapping::Key(k) if k == key))
    };
    let Some(active) = column_of("is_active") else {
        unreachable!("checked above")
    };
    let Some(active_field) = field_of("is_active").map(|f| f.ident.clone()) else {
        unreachable!("checked above")
    };
    let updated_at_fn = field_of("updated_at").map(|f| {
        let ident = &f.ident;
        quote_spanned!(f.span=>
            fn updated_at(&self) -> ::std::option::Option<i64> {
                #krate::store::ClerkVersionField::as_clerk_version(&self.#ident)
            }
        )
    });
    let synced_at_fn = field_of("synced_at").map(|f| {
        let ident = &f.ident;
        quote_spanned!(f.span=>
            fn synced_at(&self) -> ::std::option::Option<i64> {
                #krate::store::ClerkVersionField::as_clerk_version(&self.#ident)
            }
        )
    });
    let id_ident = &id_field.ident;
    let id_access = quote_spanned!(id_field.span=>
        #krate::store::ClerkIdField::as_clerk_id(&self.#id_ident)
    );

    let row_fields = mapped.iter().map(|f| {
        let (ident, ty, column) = (&f.ident, &f.ty, &f.column);
        quote!(#[diesel(column_name = #column)] #ident: #ty)
    });
    let row_values = mapped.iter().map(|f| {
        let (ident, ty) = (&f.ident, &f.ty);
        match &f.mapping {
            Mapping::With(path) => quote_spanned!(f.span=> #ident: #path(__clerk_data)),
            Mapping::Key(key) => {
                let value = value_expr(key, &krate);
                let value_ty = value_type(key, &krate);
                quote_spanned!(f.span=>
                    #ident: <#ty as #krate::store::FromClerkField<#value_ty>>::from_clerk_field(#value)
                )
            }
        }
    });
    let updated_at = updated_at.into_iter();

    Ok(quote! {
        #[allow(non_camel_case_types, unused_qualifications, clippy::all)]
        const _: () = {
            use #table as __clerk_table;

            #[derive(#krate::__private::diesel::Insertable, #krate::__private::diesel::AsChangeset)]
            #[diesel(table_name = __clerk_table, treat_none_as_null = true)]
            struct __ClerkUserRow {
                #(#row_fields,)*
            }

            impl __ClerkUserRow {
                fn from_data(__clerk_data: &#krate::ClerkUserData) -> Self {
                    Self { #(#row_values,)* }
                }
            }

            impl #krate::SyncedUser for #model {
                fn clerk_user_id(&self) -> &str {
                    #id_access
                }
                fn is_active(&self) -> bool {
                    self.#active_field
                }
                #updated_at_fn
                #synced_at_fn
            }

            #krate::__clerk_user_model!(
                model = #model,
                table = __clerk_table,
                row = __ClerkUserRow,
                id = #id_column,
                updated_at = [#(#updated_at)*],
                active = #active,
            );
        };
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(tokens: TokenStream) -> String {
        expand(tokens).to_string()
    }

    #[test]
    fn a_valid_model_expands() {
        let o = out(quote! {
            #[diesel(table_name = users)]
            struct U { id: i64, #[clerk(id)] clerk_id: String, #[clerk(email)] email: Option<String>,
                       #[clerk(is_active)] active: bool }
        });
        assert!(!o.contains("compile_error"), "{o}");
        assert!(o.contains("__clerk_user_model"));
    }

    #[test]
    fn mistakes_are_errors() {
        for (tokens, needle) in [
            (
                quote!(
                    #[diesel(table_name = t)]
                    struct U {
                        a: String,
                    }
                ),
                "#[clerk(id)]",
            ),
            (
                quote!(
                    #[diesel(table_name = t)]
                    struct U {
                        #[clerk(id)]
                        a: String,
                        #[clerk(id)]
                        b: String,
                    }
                ),
                "only one",
            ),
            (
                quote!(
                    #[diesel(table_name = t)]
                    struct U {
                        #[clerk(id)]
                        a: String,
                        #[clerk(emial)]
                        b: String,
                    }
                ),
                "email",
            ),
            (
                quote!(
                    struct U {
                        #[clerk(id)]
                        a: String,
                    }
                ),
                "table_name",
            ),
            (
                quote!(
                    #[diesel(table_name = t)]
                    struct U(String);
                ),
                "named fields",
            ),
            (
                quote!(
                    #[diesel(table_name = t)]
                    struct U {
                        #[clerk(id)]
                        a: String,
                        #[clerk(banned)]
                        b: bool,
                    }
                ),
                "#[clerk(is_active)]",
            ),
        ] {
            let o = out(tokens.clone());
            assert!(o.contains("compile_error"), "{tokens}");
            assert!(o.contains(needle), "{tokens}: {o}");
        }
    }
}
