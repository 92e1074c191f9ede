//! The store's SQL, written once and stamped out for each backend's connection type.
//!
//! The SQL is portable (`$n` parameters work on SQLite and PostgreSQL). Every write
//! function here expects its caller to hold the ledger's write lock (SQLite
//! `BEGIN IMMEDIATE`, PostgreSQL `pg_advisory_xact_lock`) so the chain cannot fork.

/// Defines the query and write functions over one connection type.
macro_rules! consent_ops {
    ($conn:ty) => {
        use chrono::{DateTime, Datelike, NaiveDate, SubsecRound, Utc};
        use sqlx::Row;

        use $crate::ledger::{ChainHead, ChainReport, ChainVerifier, GENESIS_HASH, LedgerAction, LedgerEntry, LedgerRow, chain_hash};
        use $crate::model::{Consent, ConsentTerms, RevocationRequest};
        use $crate::receipt::{Receipt, RevocationCode};
        use $crate::store::CoverQuery;
        use $crate::{Error, Result};

        fn micros(t: DateTime<Utc>) -> i64 {
            t.timestamp_micros()
        }

        fn day(d: Option<NaiveDate>) -> Option<i64> {
            d.map(|d| i64::from(d.num_days_from_ce()))
        }

        fn parse_consent(json: &str) -> Result<Consent> {
            serde_json::from_str(json).map_err(|e| Error::Corrupt(format!("consent_json: {e}")))
        }

        fn parse_entry(json: &str) -> Result<LedgerEntry> {
            serde_json::from_str(json).map_err(|e| Error::Corrupt(format!("entry_json: {e}")))
        }

        /// The newest ledger entry, if any.
        pub(crate) async fn head(conn: &mut $conn) -> Result<Option<ChainHead>> {
            let row = sqlx::query("SELECT seq, hash FROM consent_ledger ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *conn)
                .await?;
            match row {
                Some(r) => Ok(Some(ChainHead { seq: r.try_get("seq")?, hash: r.try_get("hash")? })),
                None => Ok(None),
            }
        }

        /// Appends one consent version to the chain; returns its seq. Caller holds the lock.
        async fn append(conn: &mut $conn, action: LedgerAction, consent: &Consent, now: DateTime<Utc>) -> Result<i64> {
            let (seq, prev_hash) = match head(conn).await? {
                Some(h) => (h.seq + 1, h.hash),
                None => (1, GENESIS_HASH.to_owned()),
            };
            let at = now.trunc_subsecs(6);
            let entry = LedgerEntry { seq, action, at, consent: consent.clone() };
            let json = entry.canonical_json()?;
            let hash = chain_hash(&prev_hash, &json);
            sqlx::query(
                "INSERT INTO consent_ledger (seq, consent_id, version, action, recipient, entry_json, prev_hash, hash, at_us) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(seq)
            .bind(&consent.id)
            .bind(i64::from(consent.version))
            .bind(action.as_str())
            .bind(&consent.terms.recipient)
            .bind(&json)
            .bind(&prev_hash)
            .bind(&hash)
            .bind(micros(at))
            .execute(&mut *conn)
            .await?;
            Ok(seq)
        }

        async fn insert_projection(conn: &mut $conn, c: &Consent, code_hash: &str, seq: i64) -> Result<()> {
            sqlx::query(
                "INSERT INTO consents (id, version, subject, recipient, purpose, status, valid_from_us, valid_until_us, \
                 granted_at_us, code_hash, code_used_at_us, consent_json, last_seq) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $12)",
            )
            .bind(&c.id)
            .bind(i64::from(c.version))
            .bind(&c.terms.subject)
            .bind(&c.terms.recipient)
            .bind(&c.terms.purpose)
            .bind(c.status.as_str())
            .bind(micros(c.terms.valid_from))
            .bind(c.terms.valid_until.map(micros))
            .bind(micros(c.granted_at))
            .bind(code_hash)
            .bind(serde_json::to_string(c)?)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
            for category in &c.terms.categories {
                sqlx::query(
                    "INSERT INTO consent_categories (consent_id, category, subject, recipient, status, valid_from_us, \
                     valid_until_us, data_from_day, data_until_day) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&c.id)
                .bind(category)
                .bind(&c.terms.subject)
                .bind(&c.terms.recipient)
                .bind(c.status.as_str())
                .bind(micros(c.terms.valid_from))
                .bind(c.terms.valid_until.map(micros))
                .bind(day(c.terms.data_period.from))
                .bind(day(c.terms.data_period.until))
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        }

        /// Moves the projection to a new version (status change only; terms never change).
        async fn update_projection(conn: &mut $conn, c: &Consent, seq: i64) -> Result<()> {
            sqlx::query("UPDATE consents SET version = $1, status = $2, consent_json = $3, last_seq = $4 WHERE id = $5")
                .bind(i64::from(c.version))
                .bind(c.status.as_str())
                .bind(serde_json::to_string(c)?)
                .bind(seq)
                .bind(&c.id)
                .execute(&mut *conn)
                .await?;
            sqlx::query("UPDATE consent_categories SET status = $1 WHERE consent_id = $2")
                .bind(c.status.as_str())
                .bind(&c.id)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        /// The current version of consent `id`.
        pub(crate) async fn get(conn: &mut $conn, id: &str) -> Result<Option<Consent>> {
            let row = sqlx::query("SELECT consent_json FROM consents WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
            match row {
                Some(r) => Ok(Some(parse_consent(&r.try_get::<String, _>("consent_json")?)?)),
                None => Ok(None),
            }
        }

        /// Active consents covering (subject, recipient, category, record effective date)
        /// at `now`, in one indexed query. Run it inside your own transaction to decide
        /// and read atomically.
        pub async fn active_covering(conn: &mut $conn, q: &CoverQuery<'_>, now: DateTime<Utc>) -> Result<Vec<Consent>> {
            let now_us = micros(now);
            let date = $crate::coverage::day(q.effective_date);
            let sql = format!(
                "SELECT c.consent_json FROM consent_categories k JOIN consents c ON c.id = k.consent_id \
                 WHERE k.subject = $1 AND k.recipient = $2 AND k.category = $3 AND {} AND {} \
                 ORDER BY c.granted_at_us, c.id",
                $crate::coverage::in_force("k", "$4"),
                $crate::coverage::in_data_period("k", "$5")
            );
            let rows = sqlx::query(&sql)
            .bind(q.subject)
            .bind(q.recipient)
            .bind(q.category)
            .bind(now_us)
            .bind(date)
            .fetch_all(&mut *conn)
            .await?;
            rows.iter().map(|r| parse_consent(&r.try_get::<String, _>("consent_json")?)).collect()
        }

        /// Current versions of all consents of `subject`, oldest grant first.
        pub(crate) async fn list_by_subject(conn: &mut $conn, subject: &str) -> Result<Vec<Consent>> {
            let rows = sqlx::query("SELECT consent_json FROM consents WHERE subject = $1 ORDER BY granted_at_us, id")
                .bind(subject)
                .fetch_all(&mut *conn)
                .await?;
            rows.iter().map(|r| parse_consent(&r.try_get::<String, _>("consent_json")?)).collect()
        }

        /// Every version of consent `id`, oldest first.
        pub(crate) async fn history(conn: &mut $conn, id: &str) -> Result<Vec<Consent>> {
            let rows = sqlx::query("SELECT entry_json FROM consent_ledger WHERE consent_id = $1 ORDER BY version")
                .bind(id)
                .fetch_all(&mut *conn)
                .await?;
            rows.iter().map(|r| Ok(parse_entry(&r.try_get::<String, _>("entry_json")?)?.consent)).collect()
        }

        /// Ledger entries of `recipient` after `cursor`, and the cursor to pass next.
        pub(crate) async fn changed_since(conn: &mut $conn, recipient: &str, cursor: i64, limit: u32) -> Result<(Vec<LedgerEntry>, i64)> {
            let rows = sqlx::query(
                "SELECT entry_json FROM consent_ledger WHERE recipient = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(recipient)
            .bind(cursor)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
            let entries = rows
                .iter()
                .map(|r| parse_entry(&r.try_get::<String, _>("entry_json")?))
                .collect::<Result<Vec<_>>>()?;
            let next = entries.last().map_or(cursor, |e| e.seq);
            Ok((entries, next))
        }

        /// Grants a consent and returns it with its receipt. Caller holds the lock.
        pub(crate) async fn grant_locked(
            conn: &mut $conn,
            terms: ConsentTerms,
            supersedes: Option<String>,
            pepper: &[u8],
            now: DateTime<Utc>,
        ) -> Result<(Consent, Receipt)> {
            let consent = Consent::first_version(uuid::Uuid::new_v4().to_string(), terms, supersedes, now)?;
            let code = RevocationCode::generate();
            let code_hash = code.hash(pepper)?;
            let seq = append(conn, LedgerAction::Grant, &consent, now).await?;
            insert_projection(conn, &consent, &code_hash, seq).await?;
            let receipt = Receipt::new(&consent, code, consent.granted_at);
            Ok((consent, receipt))
        }

        /// Revokes consent `id`. Caller holds the lock.
        pub(crate) async fn revoke_locked(conn: &mut $conn, id: &str, req: &RevocationRequest, now: DateTime<Utc>) -> Result<Consent> {
            let current = get(conn, id).await?.ok_or_else(|| Error::NotFound(id.to_owned()))?;
            let next = current.revoked(req, now)?;
            let seq = append(conn, LedgerAction::Revoke, &next, now).await?;
            update_projection(conn, &next, seq).await?;
            Ok(next)
        }

        /// Revokes the consent whose receipt carries `code`; the code works once. Caller holds the lock.
        pub(crate) async fn revoke_by_code_locked(
            conn: &mut $conn,
            code: &str,
            pepper: &[u8],
            req: &RevocationRequest,
            now: DateTime<Utc>,
        ) -> Result<Consent> {
            let code_hash = RevocationCode::parse(code)?.hash(pepper)?;
            let row = sqlx::query("SELECT id, code_used_at_us FROM consents WHERE code_hash = $1")
                .bind(&code_hash)
                .fetch_optional(&mut *conn)
                .await?
                .ok_or(Error::UnknownCode)?;
            if row.try_get::<Option<i64>, _>("code_used_at_us")?.is_some() {
                return Err(Error::CodeUsed);
            }
            let id: String = row.try_get("id")?;
            let revoked = revoke_locked(conn, &id, req, now).await?;
            sqlx::query("UPDATE consents SET code_used_at_us = $1 WHERE id = $2")
                .bind(micros(now))
                .bind(&id)
                .execute(&mut *conn)
                .await?;
            Ok(revoked)
        }

        /// Replaces consent `old_id` with new terms for the same subject and recipient.
        /// Caller holds the lock.
        pub(crate) async fn supersede_locked(
            conn: &mut $conn,
            old_id: &str,
            terms: ConsentTerms,
            pepper: &[u8],
            now: DateTime<Utc>,
        ) -> Result<(Consent, Receipt)> {
            let old = get(conn, old_id).await?.ok_or_else(|| Error::NotFound(old_id.to_owned()))?;
            if old.terms.subject != terms.subject || old.terms.recipient != terms.recipient {
                return Err(Error::InvalidTerms(format!(
                    "a consent superseding `{old_id}` must name the same subject and recipient"
                )));
            }
            let ended = old.superseded(now)?;
            let seq = append(conn, LedgerAction::Supersede, &ended, now).await?;
            update_projection(conn, &ended, seq).await?;
            grant_locked(conn, terms, Some(old.id), pepper, now).await
        }

        /// Verifies the whole chain, page by page; see [`ChainVerifier`].
        pub(crate) async fn verify_chain(conn: &mut $conn, expected: Option<&ChainHead>) -> Result<ChainReport> {
            const PAGE: i64 = 1000;
            let mut verifier = ChainVerifier::default();
            let mut after = 0_i64;
            loop {
                let rows = sqlx::query(
                    "SELECT seq, consent_id, version, entry_json, prev_hash, hash FROM consent_ledger \
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(after)
                .bind(PAGE)
                .fetch_all(&mut *conn)
                .await?;
                let count = rows.len();
                for r in rows {
                    let row = LedgerRow {
                        seq: r.try_get("seq")?,
                        consent_id: r.try_get("consent_id")?,
                        version: r.try_get("version")?,
                        entry_json: r.try_get("entry_json")?,
                        prev_hash: r.try_get("prev_hash")?,
                        hash: r.try_get("hash")?,
                    };
                    verifier.push(&row)?;
                    if let Some(exp) = expected {
                        verifier.check_head(exp)?;
                    }
                    after = row.seq;
                }
                if i64::try_from(count).map_or(true, |n| n < PAGE) {
                    break;
                }
            }
            Ok(verifier.finish(expected)?)
        }
    };
}

pub(crate) use consent_ops;

/// Implements [`ConsentStore`](crate::store::ConsentStore) for a backend's store over
/// the `ops` module [`consent_ops`] made for its connection type. The store provides
/// `begin_write` (a transaction holding the ledger's write lock), `begin_snapshot` (one
/// consistent read-only view) and a `pool` field.
macro_rules! consent_store {
    ($store:ty) => {
        impl ConsentStore for $store {
            async fn grant(
                &self,
                terms: ConsentTerms,
                pepper: &[u8],
                now: DateTime<Utc>,
            ) -> Result<(Consent, Receipt)> {
                let mut tx = self.begin_write().await?;
                let out = ops::grant_locked(&mut tx, terms, None, pepper, now).await?;
                tx.commit().await?;
                Ok(out)
            }

            async fn get(&self, id: &str) -> Result<Option<Consent>> {
                ops::get(&mut *self.pool.acquire().await?, id).await
            }

            async fn history(&self, id: &str) -> Result<Vec<Consent>> {
                ops::history(&mut *self.pool.acquire().await?, id).await
            }

            async fn list_by_subject(&self, subject: &str) -> Result<Vec<Consent>> {
                ops::list_by_subject(&mut *self.pool.acquire().await?, subject).await
            }

            async fn active_covering(
                &self,
                query: &CoverQuery<'_>,
                now: DateTime<Utc>,
            ) -> Result<Vec<Consent>> {
                ops::active_covering(&mut *self.pool.acquire().await?, query, now).await
            }

            async fn revoke(
                &self,
                id: &str,
                request: &RevocationRequest,
                now: DateTime<Utc>,
            ) -> Result<Consent> {
                let mut tx = self.begin_write().await?;
                let out = ops::revoke_locked(&mut tx, id, request, now).await?;
                tx.commit().await?;
                Ok(out)
            }

            async fn revoke_by_code(
                &self,
                code: &str,
                pepper: &[u8],
                request: &RevocationRequest,
                now: DateTime<Utc>,
            ) -> Result<Consent> {
                let mut tx = self.begin_write().await?;
                let out = ops::revoke_by_code_locked(&mut tx, code, pepper, request, now).await?;
                tx.commit().await?;
                Ok(out)
            }

            async fn supersede(
                &self,
                old_id: &str,
                terms: ConsentTerms,
                pepper: &[u8],
                now: DateTime<Utc>,
            ) -> Result<(Consent, Receipt)> {
                let mut tx = self.begin_write().await?;
                let out = ops::supersede_locked(&mut tx, old_id, terms, pepper, now).await?;
                tx.commit().await?;
                Ok(out)
            }

            async fn changed_since(
                &self,
                recipient: &str,
                cursor: i64,
                limit: u32,
            ) -> Result<(Vec<ConsentChange>, i64)> {
                ops::changed_since(&mut *self.pool.acquire().await?, recipient, cursor, limit).await
            }

            async fn head(&self) -> Result<Option<ChainHead>> {
                ops::head(&mut *self.pool.acquire().await?).await
            }

            async fn verify_chain(&self, expected: Option<&ChainHead>) -> Result<ChainReport> {
                let mut tx = self.begin_snapshot().await?;
                let report = ops::verify_chain(&mut tx, expected).await;
                tx.rollback().await?;
                report
            }
        }
    };
}

pub(crate) use consent_store;
