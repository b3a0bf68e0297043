//! The process SIGKILLed in the middle of a creation, then restarted on the same database.

use super::*;

async fn session_by_key(pool: &sqlx::AnyPool, key: &str) -> Option<(String, String)> {
    sqlx::query_as("SELECT public_id, status FROM kyc_sessions WHERE idempotency_key = $1")
        .bind(key)
        .fetch_optional(pool)
        .await
        .unwrap()
}

/// The real binary is SIGKILLed while one creation waits for the provider and after another
/// one's answer was stored. After a restart on the same database, neither is lost: the
/// answered one stays `created` with its link, and the interrupted one leaves `creating`
/// within a minute, as `failed` with "interrupted before the provider answered". The provider
/// is never called again for either. (Message Central: it has no status poll, so every
/// request the fake provider sees is a creation.)
async fn killed_mid_creation(backend: Backend) {
    let (database_url, dir) = fresh_database(backend).await;
    let logs = tempfile::tempdir().unwrap();
    // The first request is answered; every later one waits forever.
    let provider = FakeProvider::start(vec![
        Reply::Answer(200, Provider::MessageCentral.success()),
        Reply::Silent,
    ])
    .await;
    // An in-process instance (no background jobs) prepares the database and reads it.
    let setup = TestApp::start_on(&database_url, dir, &[]).await;
    setup.user("olga@example.com", Role::Operator).await;
    Provider::MessageCentral
        .point_at(&setup.state, &provider.base)
        .await;
    let pool = setup.state.db.pool.clone();

    // A long provider time limit in the first run, so the call is surely still waiting when
    // the process is killed; the restarted one uses the short limit the sweep derives from.
    let mut first = ServerProcess::spawn(
        &database_url,
        logs.path(),
        "first",
        &[("KYC_DESK_PROVIDER_TIMEOUT", "60s")],
    );
    first.wait_ready().await;
    let operator = sign_in_at(&first.base, "olga@example.com").await;

    let (status, answered) = call_at(
        &first.base,
        &operator,
        "create_link",
        &link_form(
            Provider::MessageCentral.option(),
            "Asha Rao",
            None,
            &form_key(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answered}");
    assert_eq!(answered["summary"]["status"], "started");
    let answered_id = answered["summary"]["public_id"]
        .as_str()
        .unwrap()
        .to_string();
    let answered_link = answered["link_url"].as_str().unwrap().to_string();

    let waiting_key = form_key();
    let waiting_call = {
        let base = first.base.clone();
        let form = link_form(
            Provider::MessageCentral.option(),
            "Ravi Kumar",
            None,
            &waiting_key,
        );
        tokio::spawn(async move {
            // The process dies under this request; whatever comes back is not the point.
            let _ = operator
                .post(format!("{base}/api/create_link"))
                .header("origin", &base)
                .form(&form)
                .send()
                .await;
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let waiting_id = loop {
        if let Some((public_id, status)) = session_by_key(&pool, &waiting_key).await
            && status == "creating"
            && provider.requests().len() == 2
        {
            break public_id;
        }
        assert!(
            Instant::now() < deadline,
            "the second creation never reached the provider:\n{}",
            first.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.kill();
    let _ = waiting_call.await;
    assert_eq!(stored(&pool, &waiting_id).await.status, "creating");

    let mut second = ServerProcess::spawn(
        &database_url,
        logs.path(),
        "second",
        &[("KYC_DESK_PROVIDER_TIMEOUT", "1s")],
    );
    second.wait_ready().await;
    let restarted = Instant::now();
    let interrupted = loop {
        let kept = stored(&pool, &waiting_id).await;
        if kept.status != "creating" {
            break kept;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(60),
            "still creating a minute after the restart:\n{}",
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "{backend:?}: the interrupted creation failed {:?} after the restart",
        restarted.elapsed()
    );

    // The interrupted creation: failed, in plain words, once.
    assert_eq!(interrupted.status, "failed", "{interrupted:?}");
    let reason = interrupted.last_error.clone().unwrap_or_default();
    assert!(
        reason.contains("Interrupted before the provider answered"),
        "{reason}"
    );
    assert_plain(&reason);
    assert_eq!(
        interrupted.kinds(),
        ["creating", "failed"],
        "{interrupted:?}"
    );
    let status_rows = audit_rows_about(&setup.state.db, "link.status", &waiting_id).await;
    assert_eq!(status_rows.len(), 1, "{status_rows:#?}");
    assert_eq!(status_rows[0].outcome, "failure");
    assert_eq!(status_rows[0].actor_role, "system");
    assert!(status_rows[0].reason.contains("Interrupted"));
    // ... and the operator sees it so on the restarted server.
    let operator = sign_in_at(&second.base, "olga@example.com").await;
    let (status, shown) = call_at(
        &second.base,
        &operator,
        "session_detail",
        &[("public_id".into(), waiting_id.clone())],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["summary"]["status"], "failed");
    assert_eq!(shown["last_error"], reason.as_str());

    // The answered creation: still created, its link unchanged, nothing added.
    let kept = stored(&pool, &answered_id).await;
    assert_eq!(kept.status, "started", "{kept:?}");
    assert_eq!(kept.link_url.as_deref(), Some(answered_link.as_str()));
    assert_eq!(kept.kinds(), ["creating", "started"], "{kept:?}");
    let created_rows = audit_rows_about(&setup.state.db, "link.create", &answered_id).await;
    assert_eq!(created_rows.len(), 1);
    assert_eq!(created_rows[0].outcome, "success");
    let (status, shown) = call_at(
        &second.base,
        &operator,
        "session_detail",
        &[("public_id".into(), answered_id.clone())],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["summary"]["status"], "started");
    assert_eq!(shown["link_url"], answered_link.as_str());

    // Nothing called the provider again after the restart.
    assert_eq!(
        provider.requests(),
        [
            Provider::MessageCentral.request(),
            Provider::MessageCentral.request()
        ]
    );
    assert_audit_chain_intact(&setup.state).await;
}

both_backends!(a_kill_mid_creation_loses_nothing, |backend| async move {
    killed_mid_creation(backend).await;
});
