-- Webhook deliveries name remote objects by id or by human key (`#12`); both
-- lookups are index scans, so a delivery costs the same with 10 or 100,000 mappings.
CREATE INDEX external_mapping_external_key ON external_mapping (connection_id, external_key)
    WHERE external_key IS NOT NULL;
