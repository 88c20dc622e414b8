import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { bodyForStatus, HTTP_ERRORS, HttpError, toErrorReply } from '../../src/errors.ts';

describe('HTTP errors', () => {
  test('an HttpError is sent with its code, status and message', () => {
    const error = new HttpError('server_full', 'server is at websocket.max_clients (1)');
    assert.equal(error.statusCode, 503);
    assert.deepEqual(toErrorReply(error), {
      statusCode: 503,
      body: { error: 'server_full', message: 'server is at websocket.max_clients (1)' },
      unexpected: false,
    });
  });

  test('a schema validation failure is invalid_request with its message', () => {
    const error = Object.assign(new Error('querystring/type must be equal to one of the allowed values'), {
      statusCode: 400,
      code: 'FST_ERR_VALIDATION',
      validation: [],
    });
    assert.deepEqual(toErrorReply(error).body, {
      error: 'invalid_request',
      message: 'querystring/type must be equal to one of the allowed values',
    });
  });

  test('another client error keeps its status, with a code for it', () => {
    const reply = toErrorReply(Object.assign(new Error('Request body is too large'), { statusCode: 413 }));
    assert.deepEqual(reply, {
      statusCode: 413,
      body: { error: 'payload_too_large', message: 'Request body is too large' },
      unexpected: false,
    });
    assert.equal(toErrorReply(Object.assign(new Error(''), { statusCode: 418 })).body.error, 'bad_request');
  });

  test('anything else is a 500 that says nothing of it', () => {
    for (const error of [
      new Error('secret'),
      'a string',
      undefined,
      { statusCode: 502, message: 'upstream' },
    ]) {
      assert.deepEqual(toErrorReply(error), {
        statusCode: 500,
        body: { error: 'internal_error', message: 'internal server error' },
        unexpected: true,
      });
    }
  });

  test('an empty-bodied error status gets a body, and every code has a 4xx/5xx status', () => {
    assert.deepEqual(bodyForStatus(404), { error: 'not_found', message: 'not found' });
    assert.deepEqual(bodyForStatus(503), { error: 'not_ready', message: 'not ready' });
    for (const status of Object.values(HTTP_ERRORS)) assert.ok(status >= 400 && status < 600);
  });
});
