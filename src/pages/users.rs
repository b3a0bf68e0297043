//! The admins' users page: create users, change roles, disable/enable, reset passwords and
//! second factors.

use super::step_up::ActionFailure;
use super::{
    ErrorBanner, Guarded, TextField, failure_message, field_message, page_resource, result_of,
};
use crate::api::users::{
    CreateUser, ResetUserFactors, ResetUserPassword, SetUserDisabled, SetUserRole, SetUserSignOn,
    list_users,
};
use crate::pages::account::NEW_PASSWORD_HINT;
use crate::types::{AppError, CurrentUser, Role, UserRow};
use leptos::prelude::*;
use leptos_meta::Title;

/// The users page (admins only).
#[component]
pub fn UsersPage() -> impl IntoView {
    view! {
        <Title text="Users" />
        <Guarded path="/users">
            <UsersAdmin />
        </Guarded>
    }
}

#[component]
fn UsersAdmin() -> impl IntoView {
    let me = expect_context::<CurrentUser>();
    let create = ServerAction::<CreateUser>::new();
    let set_role = ServerAction::<SetUserRole>::new();
    let set_disabled = ServerAction::<SetUserDisabled>::new();
    let reset = ServerAction::<ResetUserPassword>::new();
    let reset_factors = ServerAction::<ResetUserFactors>::new();
    let sign_on = ServerAction::<SetUserSignOn>::new();
    let users = page_resource(
        move || {
            (
                create.version().get(),
                set_role.version().get(),
                set_disabled.version().get(),
                reset.version().get(),
                reset_factors.version().get(),
                sign_on.version().get(),
            )
        },
        |_| list_users(),
    );
    let notice = RwSignal::new(None::<String>);
    // The latest refusal of a row action (a step-up request among them).
    let row_error = Signal::derive(move || {
        [
            set_role.value().get().and_then(Result::err),
            set_disabled.value().get().and_then(Result::err),
            reset
                .value()
                .get()
                .and_then(Result::err)
                .filter(|e| !matches!(e, AppError::Validation { .. })),
            reset_factors.value().get().and_then(Result::err),
            sign_on.value().get().and_then(Result::err),
        ]
        .into_iter()
        .flatten()
        .next()
        .map(Err::<(), AppError>)
    });
    Effect::new(move |_| {
        if let Some(Ok(row)) = reset_factors.value().get() {
            notice.set(Some(format!(
                "The second factor of {} was reset and their sessions ended. They set up a new one at their next sign-in.",
                row.email
            )));
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(row)) = create.value().get() {
            notice.set(Some(if row.sso_only {
                format!(
                    "{} was created. They sign in with single sign-on (their first sign-on links the account by email).",
                    row.email
                )
            } else {
                format!(
                    "{} was created. Give them the initial password; they must change it at first sign-in.",
                    row.email
                )
            }));
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(row)) = sign_on.value().get() {
            notice.set(Some(if row.sso_only {
                format!("{} now signs in with single sign-on only; their password no longer works and their sessions ended.", row.email)
            } else if !row.sso_linked {
                format!("{} may use a password again or sign on afresh; their sessions ended. Set a temporary password with “Reset password” if they need one.", row.email)
            } else {
                format!("{} may use a password again; their sessions ended. Set a temporary password with “Reset password”.", row.email)
            }));
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(row)) = reset.value().get() {
            notice.set(Some(format!(
                "The password of {} was reset and their sessions ended. They must change it at next sign-in.",
                row.email
            )));
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(row)) = set_disabled.value().get() {
            notice.set(Some(if row.disabled {
                format!("{} is disabled; their open sessions have ended.", row.email)
            } else {
                format!("{} can sign in again.", row.email)
            }));
        }
    });
    let create_value = result_of(create);
    let creating = create.pending();
    let new_sso_only = RwSignal::new(false);
    let my_id = me.id;

    view! {
        <section class="panel">
            <h1>"Users"</h1>
            {move || notice.get().map(|text| view! {
                <p class="banner success" role="status" data-testid="users-notice">{text}</p>
            })}
            <ActionFailure result=row_error again="Make the change again." />
            <div class="table-wrap">
                <table class="data" data-testid="users-table">
                    <thead>
                        <tr>
                            <th scope="col">"Name"</th>
                            <th scope="col">"Email"</th>
                            <th scope="col">"Role"</th>
                            <th scope="col">"Status"</th>
                            <th scope="col">"Last sign-in"</th>
                            <th scope="col">"Actions"</th>
                        </tr>
                    </thead>
                    <Suspense fallback=|| view! { <tbody><tr><td colspan="6">"Loading users…"</td></tr></tbody> }>
                        {move || Suspend::new(async move {
                            match users.await {
                                Ok(rows) => view! {
                                    <tbody>
                                        {rows.into_iter().map(|row| view! {
                                            <UserRowView row=row my_id=my_id set_role=set_role set_disabled=set_disabled reset=reset reset_factors=reset_factors sign_on=sign_on />
                                        }).collect_view()}
                                    </tbody>
                                }.into_any(),
                                Err(error) => view! {
                                    <tbody><tr><td colspan="6" class="banner error">{error.to_string()}</td></tr></tbody>
                                }.into_any(),
                            }
                        })}
                    </Suspense>
                </table>
            </div>
        </section>

        <section class="panel narrow">
            <h2>"Add a user"</h2>
            <ActionForm action=create attr:data-testid="create-user-form">
                <TextField label="Email" name="email" id_prefix="new" kind="email" error=field_message(create_value, "email") />
                <TextField label="Display name" name="display_name" id_prefix="new" maxlength=100 error=field_message(create_value, "display_name") />
                <div class="field" class:invalid=move || field_message(create_value, "role").get().is_some()>
                    <label for="new-role">"Role"</label>
                    <select id="new-role" name="role">
                        <option value="operator" selected>"Operator — creates and follows KYC links"</option>
                        <option value="auditor">"Auditor — reads sessions and the audit log"</option>
                        <option value="admin">"Admin — also manages users and credentials"</option>
                    </select>
                    {move || field_message(create_value, "role").get().map(|m| view! { <p class="field-error">{m}</p> })}
                </div>
                <div class="field checkbox">
                    <label>
                        <input
                            type="checkbox"
                            name="sso_only"
                            value="true"
                            data-testid="new-sso-only"
                            on:change=move |ev| new_sso_only.set(event_target_checked(&ev))
                        />
                        " Single sign-on only (no password; needs single sign-on set up under Credentials)"
                    </label>
                </div>
                <div hidden=move || new_sso_only.get()>
                    <TextField
                        label="Initial password"
                        name="password"
                        id_prefix="new"
                        kind="password"
                        autocomplete="new-password"
                        hint=NEW_PASSWORD_HINT
                        required=false
                        error=field_message(create_value, "password")
                    />
                </div>
                <ErrorBanner message=Signal::derive(move || {
                    match create_value.get() {
                        Some(Err(AppError::Validation { .. })) => None,
                        _ => failure_message(create_value).get(),
                    }
                }) />
                <button type="submit" class="primary" disabled=move || creating.get()>
                    {move || if creating.get() { "Creating…" } else { "Create user" }}
                </button>
            </ActionForm>
        </section>
    }
}

#[component]
fn UserRowView(
    row: UserRow,
    my_id: i64,
    set_role: ServerAction<SetUserRole>,
    set_disabled: ServerAction<SetUserDisabled>,
    reset: ServerAction<ResetUserPassword>,
    reset_factors: ServerAction<ResetUserFactors>,
    sign_on: ServerAction<SetUserSignOn>,
) -> impl IntoView {
    let id = row.id;
    let sso_only = row.sso_only;
    let sso_linked = row.sso_linked;
    let has_factor = row.second_factor;
    let disabled = row.disabled;
    let is_me = row.id == my_id;
    let reset_value = result_of(reset);
    let select_id = format!("role-{id}");
    // Which row's reset form was submitted last, so its field error shows under that form.
    let submitted_here = RwSignal::new(false);
    view! {
        <tr data-testid=format!("user-row-{}", row.email) class:disabled=disabled>
            <td>
                {row.display_name.clone()}
                {is_me.then(|| view! { <span class="muted">" (you)"</span> })}
            </td>
            <td>{row.email.clone()}</td>
            <td>
                <label class="visually-hidden" for=select_id.clone()>{format!("Role of {}", row.email)}</label>
                <select
                    id=select_id
                    on:change=move |ev| {
                        set_role.dispatch(SetUserRole { user_id: id, role: event_target_value(&ev) });
                    }
                >
                    {Role::ALL.into_iter().map(|role| view! {
                        <option value=role.as_str() selected=role == row.role>{role.label()}</option>
                    }).collect_view()}
                </select>
            </td>
            <td>
                {if disabled {
                    view! { <span class="badge status-disabled">"Disabled"</span> }.into_any()
                } else if row.must_change_password {
                    view! { <span class="badge status-pending">"Must change password"</span> }.into_any()
                } else {
                    view! { <span class="badge status-active">"Active"</span> }.into_any()
                }}
                {has_factor.then(|| view! { <span class="badge" data-testid="has-second-factor" title="Has a second factor (authenticator app or passkey)">"2FA"</span> })}
                {sso_only.then(|| view! { <span class="badge" data-testid="sso-only" title="Signs in with single sign-on only">"SSO only"</span> })}
                {sso_linked.then(|| view! { <span class="badge" data-testid="sso-linked" title="Has signed in with single sign-on">"SSO linked"</span> })}
            </td>
            <td>{row.last_sign_in.clone().unwrap_or_else(|| "never".into())}</td>
            <td class="actions">
                {(!is_me).then(|| view! {
                    <button
                        type="button"
                        class=if disabled { "secondary" } else { "danger" }
                        on:click=move |_| {
                            set_disabled.dispatch(SetUserDisabled { user_id: id, disabled: !disabled });
                        }
                    >
                        {if disabled { "Enable" } else { "Disable" }}
                    </button>
                    {has_factor.then(|| view! {
                        <button
                            type="button"
                            class="secondary"
                            data-testid="reset-second-factor"
                            on:click=move |_| {
                                reset_factors.dispatch(ResetUserFactors { user_id: id });
                            }
                        >
                            "Reset second factor"
                        </button>
                    })}
                    <button
                        type="button"
                        class="secondary"
                        data-testid="toggle-sso-only"
                        on:click=move |_| {
                            sign_on.dispatch(SetUserSignOn {
                                user_id: id,
                                change: if sso_only { "allow_password" } else { "sso_only" }.to_string(),
                            });
                        }
                    >
                        {if sso_only { "Allow a password" } else { "Make SSO-only" }}
                    </button>
                    {sso_linked.then(|| view! {
                        <button
                            type="button"
                            class="secondary"
                            data-testid="unlink-sso"
                            on:click=move |_| {
                                sign_on.dispatch(SetUserSignOn { user_id: id, change: "unlink".to_string() });
                            }
                        >
                            "Unlink single sign-on"
                        </button>
                    })}
                    <details class="inline-form" hidden=sso_only on:submit=move |_| submitted_here.set(true)>
                        <summary>"Reset password"</summary>
                        <ActionForm action=reset>
                            <input type="hidden" name="user_id" value=id.to_string() />
                            <TextField
                                label="New temporary password"
                                name="password"
                                id_prefix=format!("reset-{id}")
                                kind="password"
                                autocomplete="new-password"
                                error=Signal::derive(move || {
                                    if submitted_here.get() { crate::types::field_error(&reset_value.get(), "password") } else { None }
                                })
                            />
                            <button type="submit" class="secondary">"Set password"</button>
                        </ActionForm>
                    </details>
                })}
            </td>
        </tr>
    }
}
