/**
 * One canonical form for domains and addresses (src/address.ts, src/services/validate.ts, issue
 * 11): U-labels become lower-case A-labels (UTS #46), local parts NFC, ASCII input keeps its
 * fast path; display goes back to U-labels; invalid names are refused by the validators; queue
 * IDs match in any case.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  canonicalDomain,
  describeDomain,
  displayAddress,
  domainOf,
  envelopeAddress,
  normalizeAddress,
} from "../src/address.js";
import { PetrelError } from "../src/errors.js";
import { canonicalId, validAddress, validDomain } from "../src/services/validate.js";

describe("canonical domains and addresses", () => {
  it("turns U-labels into lower-case A-labels and back for display", () => {
    assert.equal(canonicalDomain("例子.测试"), "xn--fsqu00a.xn--0zwm56d");
    assert.equal(canonicalDomain("BÜCHER.Example"), "xn--bcher-kva.example");
    assert.equal(canonicalDomain("Example.COM"), "example.com");
    assert.equal(
      domainOf("Zoë@例子。测试"),
      "xn--fsqu00a.xn--0zwm56d",
      "ideographic full stop is a dot (UTS #46)",
    );
    assert.equal(describeDomain("xn--fsqu00a.xn--0zwm56d"), "例子.测试 (xn--fsqu00a.xn--0zwm56d)");
    assert.equal(describeDomain("example.com"), "example.com");
    assert.equal(displayAddress("用户@xn--fsqu00a.xn--0zwm56d"), "用户@例子.测试");
  });

  it("puts local parts in NFC and keeps ASCII envelope addresses exactly as given", () => {
    const nfd = "mu\u0308ller@bücher.example";
    assert.equal(normalizeAddress(nfd), "m\u00fcller@xn--bcher-kva.example");
    assert.equal(envelopeAddress(nfd), "m\u00fcller@xn--bcher-kva.example");
    assert.equal(envelopeAddress("User@Example.COM"), "User@Example.COM");
    assert.equal(normalizeAddress("User@Example.COM"), "User@example.com");
  });

  it("validates operator input: U-labels accepted, bad punycode and junk refused", () => {
    assert.equal(validDomain(" 例子.测试. "), "xn--fsqu00a.xn--0zwm56d");
    assert.equal(validDomain("XN--FSQU00A.xn--0zwm56d"), "xn--fsqu00a.xn--0zwm56d");
    assert.equal(validAddress("用户@例子.测试"), "用户@xn--fsqu00a.xn--0zwm56d");
    for (const bad of ["xn--zz.example", "ex ample.com", "例子", "a..b", `${"é".repeat(70)}.example`]) {
      assert.throws(() => validDomain(bad), PetrelError, bad);
    }
    // 64 octets, not 64 characters (RFC 5321 §4.5.3.1.1): 22 three-byte characters are 66.
    assert.throws(() => validAddress(`${"用".repeat(22)}@example.com`), PetrelError);
    assert.equal(validAddress(`${"用".repeat(21)}@example.com`), `${"用".repeat(21)}@example.com`);
  });

  it("matches queue IDs in any case", () => {
    assert.equal(canonicalId(" 01m8t2ctbyfnbj77d3ygndfzqh "), "01M8T2CTBYFNBJ77D3YGNDFZQH");
  });
});
