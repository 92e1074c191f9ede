-- A participant's English display name beside `display_name` (Japanese), shown to
-- residents on the portal (`participants add --name-ja … --name-en …`).
ALTER TABLE hub_participants ADD COLUMN display_name_en TEXT;
