// A publisher of the erasure pipeline's events in Node.js, written from schemas/asyncapi.yaml and docs/CONTRACT.md only.
//
// Everything it knows about the wire comes from the AsyncAPI document at run time: the exchange, the routing key
// and CloudEvent type of each message, the dataschema, the content type, the signature header, and an example of
// each message's data to start from. It builds the envelope, signs the exact bytes it sends with HMAC-SHA256
// (node:crypto), and publishes with confirms, mandatory and persistent, as the contract asks.
//
//   node publish.mjs <asyncapi.yaml> <command> <user id>
//
// commands: purchase | deregistration | tampered-deregistration | unknown-type
// environment: AMQP_URL, ERASURE_NAMESPACE, ERASURE_SIGNING_KEY ("<key id>:<secret>")
// Prints one JSON line per message published: {event_id, type, routing_key, request_id?, body}.

import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import amqp from 'amqplib';
import { parse } from 'yaml';

const TYPE_PREFIX = 'se.loggamera.';
const EXAMPLE_USER = 'u-1001';

function fail(message) {
  process.stderr.write(`publish.mjs: ${message}\n`);
  process.exit(2);
}

/** What the AsyncAPI document says about one message: channel binding, type, schema, example data. */
function describe(doc, messageName) {
  const message = doc.components.messages[messageName];
  if (!message) fail(`the AsyncAPI document has no message ${messageName}`);
  const channel = doc.channels[messageName];
  const exchange = channel.bindings.amqp.exchange;
  const payload = doc.components.schemas[message.payload.$ref.split('/').pop()];
  const attributes = payload.allOf.find((part) => part.properties && part.properties.type).properties;
  return {
    routingKey: channel.address,
    exchange: exchange.name,
    type: message.bindings.amqp.messageType,
    dataschema: attributes.dataschema.const,
    contentType: message.contentType || doc.defaultContentType,
    example: message.examples[0].payload.data,
  };
}

/** The example's data for another user: every string naming the example user names ours. */
function forUser(example, userId) {
  return JSON.parse(JSON.stringify(example).replaceAll(EXAMPLE_USER, userId));
}

/** Money as the contract spells it: a string with two decimals, computed in whole öre. */
function money(ore) {
  return `${Math.floor(ore / 100)}.${String(ore % 100).padStart(2, '0')}`;
}

/** The purchase totals rule of x-runtime-only-rules: lines, VAT rounded half up once over all lines. */
function totals(lines) {
  let excl = 0;
  let vatHundredths = 0; // öre x 100, so the rate's two decimals stay exact
  for (const line of lines) {
    const unit = Math.round(Number(line.unit_price) * 100);
    excl += line.quantity * unit;
    vatHundredths += line.quantity * unit * Math.round(Number(line.vat_rate) * 100);
  }
  const vat = Math.floor((vatHundredths + 50) / 100);
  return { total_excl_vat: money(excl), vat_amount: money(vat), total_incl_vat: money(excl + vat) };
}

function nowRfc3339() {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function envelope(spec, data, source) {
  return {
    specversion: '1.0',
    id: randomUUID(),
    source,
    type: spec.type,
    time: nowRfc3339(),
    subject: data.user_id,
    datacontenttype: 'application/json',
    dataschema: spec.dataschema,
    data,
  };
}

function sign(keyId, secret, bytes) {
  const digest = createHmac('sha256', Buffer.from(secret, 'utf8')).update(bytes).digest('hex');
  return `v1=${keyId}:${digest}`;
}

function build(doc, command, userId) {
  const messageName = command === 'purchase' ? 'PurchaseCompleted' : 'UserDeregistered';
  const spec = describe(doc, messageName);
  const data = forUser(spec.example, userId);
  if (messageName === 'PurchaseCompleted') {
    data.purchased_at = nowRfc3339();
    Object.assign(data, totals(data.lines));
  } else {
    data.request_id = randomUUID();
    data.requested_at = nowRfc3339();
    data.replay = false;
    delete data.original_request_id;
  }
  const event = envelope(spec, data, 'urn:loggamera:node-publisher');
  if (command === 'unknown-type') {
    event.type = `${TYPE_PREFIX}user.exploded.v1`; // published under the deregistration's key, so it reaches queues
  }
  return { spec, event };
}

async function main() {
  const [asyncapiPath, command, userId] = process.argv.slice(2);
  const commands = ['purchase', 'deregistration', 'tampered-deregistration', 'unknown-type'];
  if (!asyncapiPath || !commands.includes(command) || !userId) {
    fail(`usage: node publish.mjs <asyncapi.yaml> <${commands.join('|')}> <user id>`);
  }
  const doc = parse(readFileSync(asyncapiPath, 'utf8'));
  const namespace = process.env.ERASURE_NAMESPACE || 'erasure';
  const [keyId, ...rest] = (process.env.ERASURE_SIGNING_KEY || '').split(':');
  const secret = rest.join(':');
  if (!keyId || !secret) fail('ERASURE_SIGNING_KEY must be "<key id>:<secret>"');
  const signatureHeader = doc['x-signing'].header;

  const { spec, event } = build(doc, command, userId);
  const body = Buffer.from(JSON.stringify(event), 'utf8');
  const signature = sign(keyId, secret, body);
  let sent = body;
  if (command === 'tampered-deregistration') {
    // Signed, then altered in transit: another reason on the same bytes' signature.
    sent = Buffer.from(JSON.stringify({ ...event, data: { ...event.data, reason: 'admin' } }), 'utf8');
  }
  // Exchange names start with the namespace; the document names them under the default one.
  const defaultNamespace = spec.exchange.split('.')[0];
  const exchange = `${namespace}${spec.exchange.slice(defaultNamespace.length)}`;

  const connection = await amqp.connect(process.env.AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/%2F');
  try {
    const channel = await connection.createConfirmChannel();
    const returned = [];
    channel.on('return', (message) => returned.push(message.properties.messageId));
    channel.publish(exchange, spec.routingKey, sent, {
      contentType: spec.contentType,
      messageId: event.id,
      deliveryMode: 2,
      persistent: true,
      mandatory: true,
      timestamp: Math.floor(Date.parse(event.time) / 1000),
      appId: event.source,
      headers: { [signatureHeader]: signature },
    });
    await channel.waitForConfirms();
    if (returned.length) fail(`the broker returned ${returned.join(', ')}: no queue is bound to ${spec.routingKey}`);
    await channel.close();
  } finally {
    await connection.close();
  }
  process.stdout.write(`${JSON.stringify({
    event_id: event.id,
    type: event.type,
    routing_key: spec.routingKey,
    request_id: event.data.request_id,
    body: sent.toString('utf8'),
  })}\n`);
}

main().catch((error) => fail(error && error.stack ? error.stack : String(error)));
