//! A provider that fails when the customer presses Start on KYC Desk's link: the customer gets
//! a page in words with **Try again** (nothing lost: the consent is kept), the operator a
//! timeline event and an audit row; the retry makes the URL and sends the customer on.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_failing_at_start_offers_a_retry_and_tells_the_operator() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let app = TestApp::start_with(
            backend,
            &[
                ("KYC_DESK_PROVIDER_TIMEOUT", "1s"),
                ("KYC_DESK_PROVIDER_CONNECT_TIMEOUT", "1s"),
            ],
        )
        .await;
        app.user("olga@example.com", Role::Operator).await;
        let operator = app.signed_in("olga@example.com").await;
        let provider = Provider::MessageCentral;
        let fake = FakeProvider::start(vec![
            Reply::Answer(500, r#"{"message":"Internal Server Error"}"#.into()),
            Reply::Answer(200, provider.success()),
        ])
        .await;
        provider.point_at(&app.state, &fake.base).await;
        let (status, body) = call_at(
            &app.base,
            &operator,
            "create_link",
            &link_form_with(
                provider.option(),
                "Asha Rao",
                "9876543210",
                &form_key(),
                &[("handover", "customer_link")],
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{backend:?}: {body}");
        assert_eq!(body["summary"]["status"], "issued");
        assert!(fake.requests().is_empty(), "issuing calls no provider");
        let public_id = body["summary"]["public_id"].as_str().unwrap().to_string();
        let link = body["link_url"].as_str().unwrap().to_string();
        let path = link
            .split_once("/v/")
            .map(|(_, code)| format!("/v/{code}"))
            .unwrap();

        let customer = browser();
        let page = customer
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let start = |customer: &reqwest::Client| {
            customer
                .post(format!("{}{path}/start", app.base))
                .header("origin", &app.base)
                .form(&[("lang", "en"), ("notice_version", "1"), ("consent", "on")])
                .send()
        };
        let failed = start(&customer).await.unwrap();
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
        let words = failed.text().await.unwrap();
        assert!(words.contains("not available right now"), "{words}");
        assert!(
            words.contains("data-testid=\"retry\""),
            "a retry button: {words}"
        );
        assert_plain(&words);

        // The operator sees it on the timeline, in plain words; the consent is kept.
        let kept = stored(&app.state.db.pool, &public_id).await;
        assert_eq!(kept.status, "consented", "{backend:?}: {kept:?}");
        let (_, failure) = kept
            .events
            .iter()
            .find(|(kind, _)| kind == "mint_failed")
            .unwrap_or_else(|| panic!("{backend:?}: no mint_failed event: {kept:?}"));
        assert!(failure.contains("could not be made"), "{failure}");
        assert_plain(failure);
        let audit = audit_rows_about(&app.state.db, "link.mint", &public_id).await;
        assert_eq!(audit.len(), 1, "{audit:#?}");
        assert_eq!(audit[0].outcome, "failure");

        // Try again: the provider answers now.
        let retried = start(&customer).await.unwrap();
        assert_eq!(retried.status(), StatusCode::SEE_OTHER, "{backend:?}");
        assert_eq!(
            retried.headers()["location"].to_str().unwrap(),
            "https://ekyc.example/journey/abc"
        );
        let kept = stored(&app.state.db.pool, &public_id).await;
        assert_eq!(kept.status, "started");
        assert_eq!(fake.requests().len(), 2);
        assert_audit_chain_intact(&app.state).await;
    }
}
