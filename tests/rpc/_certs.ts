/**
 * Test certificates, made at test time with the `openssl` command line tool
 * (nothing secret is committed): two unrelated certificate authorities, a
 * server leaf and a client leaf of the first, a client leaf of the second, and
 * an expired server leaf of the first.
 *
 * ```ts ignore
 * const dir = await Deno.makeTempDir();
 * const certs = await makeTestCertificates(dir);
 * // certs.server.cert / certs.server.key / certs.ca.cert ...
 * ```
 *
 * @module
 */

/** A certificate and its private key, both PEM. */
export interface TestKeyPair {
  /** The certificate, PEM. */
  cert: string;
  /** The unencrypted private key, PEM (PKCS#8). */
  key: string;
}

/** The certificates {@linkcode makeTestCertificates} makes. */
export interface TestCertificates {
  /** The test CA: RSA 2048, CA:TRUE, keyCertSign and cRLSign, CN `tsercom test CA`. */
  ca: TestKeyPair;
  /**
   * A server leaf signed by {@linkcode TestCertificates.ca}: CN `localhost`,
   * SANs `DNS:localhost`, `IP:127.0.0.1`, `IP:::1`, EKU serverAuth.
   */
  server: TestKeyPair;
  /** A client leaf signed by {@linkcode TestCertificates.ca}: CN {@linkcode CLIENT_COMMON_NAME}, EKU clientAuth. */
  client: TestKeyPair;
  /** A second CA, unrelated to the first: CN `tsercom other CA`. */
  otherCa: TestKeyPair;
  /** A client leaf signed by {@linkcode TestCertificates.otherCa}: CN `tsercom-other-client`, EKU clientAuth. */
  otherClient: TestKeyPair;
  /**
   * A server leaf like {@linkcode TestCertificates.server}, signed by
   * {@linkcode TestCertificates.ca}, that was valid from 2020-01-01 to
   * 2020-01-02 only.
   */
  expiredServer: TestKeyPair;
}

/** The common name of {@linkcode TestCertificates.client}. */
export const CLIENT_COMMON_NAME = "tsercom-test-client";

const SERVER_EXTENSIONS = [
  "basicConstraints=critical,CA:FALSE",
  "keyUsage=critical,digitalSignature,keyEncipherment",
  "extendedKeyUsage=serverAuth",
  "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
].join("\n");

const CLIENT_EXTENSIONS = [
  "basicConstraints=critical,CA:FALSE",
  "keyUsage=critical,digitalSignature,keyEncipherment",
  "extendedKeyUsage=clientAuth",
].join("\n");

/** A minimal `openssl ca` configuration: lets the tests choose start and end dates. */
function caConfig(name: string): string {
  return [
    "[ca]",
    "default_ca = test",
    "[test]",
    "dir = .",
    `database = ${name}.index`,
    "new_certs_dir = .",
    `certificate = ${name}.pem`,
    `private_key = ${name}.key`,
    "default_md = sha256",
    "policy = any",
    "rand_serial = yes",
    "unique_subject = no",
    "copy_extensions = none",
    "email_in_dn = no",
    "[any]",
    "commonName = supplied",
    "",
  ].join("\n");
}

/** Runs `openssl` with `args` in `dir`; throws with its stderr when it fails. */
export async function openssl(dir: string, args: string[]): Promise<void> {
  const output = await new Deno.Command("openssl", {
    args,
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(
      `openssl ${args.join(" ")} failed (${output.code}): ${
        new TextDecoder().decode(output.stderr)
      }`,
    );
  }
}

async function makeCa(dir: string, name: string, commonName: string): Promise<TestKeyPair> {
  await openssl(dir, [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.pem`,
    "-days",
    "3650",
    "-subj",
    `/CN=${commonName}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  await Deno.writeTextFile(`${dir}/${name}.index`, "");
  await Deno.writeTextFile(`${dir}/${name}.cnf`, caConfig(name));
  return await read(dir, name);
}

interface LeafOptions {
  ca: string;
  commonName: string;
  extensions: string;
  /** `openssl ca` dates (`YYYYMMDDHHMMSSZ`); default: valid from now for a year. */
  dates?: { start: string; end: string };
}

async function makeLeaf(dir: string, name: string, options: LeafOptions): Promise<TestKeyPair> {
  await Deno.writeTextFile(`${dir}/${name}.ext`, options.extensions + "\n");
  await openssl(dir, [
    "req",
    "-new",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
    "-subj",
    `/CN=${options.commonName}`,
  ]);
  const validity = options.dates === undefined
    ? ["-days", "365"]
    : ["-startdate", options.dates.start, "-enddate", options.dates.end];
  await openssl(dir, [
    "ca",
    "-batch",
    "-config",
    `${options.ca}.cnf`,
    "-notext",
    ...validity,
    "-extfile",
    `${name}.ext`,
    "-in",
    `${name}.csr`,
    "-out",
    `${name}.pem`,
  ]);
  return await read(dir, name);
}

async function read(dir: string, name: string): Promise<TestKeyPair> {
  return {
    cert: await Deno.readTextFile(`${dir}/${name}.pem`),
    key: await Deno.readTextFile(`${dir}/${name}.key`),
  };
}

/**
 * Makes the test certificates in `dir` (an existing, empty directory the
 * caller owns and removes) and returns them as PEM strings. Takes about a
 * second: call it once per test file.
 *
 * @param dir The directory to work in.
 * @returns The certificates and keys.
 */
export async function makeTestCertificates(dir: string): Promise<TestCertificates> {
  const [ca, otherCa] = await Promise.all([
    makeCa(dir, "ca", "tsercom test CA"),
    makeCa(dir, "other-ca", "tsercom other CA"),
  ]);
  // `openssl ca` updates its database file: one leaf at a time per CA.
  const server = await makeLeaf(dir, "server", {
    ca: "ca",
    commonName: "localhost",
    extensions: SERVER_EXTENSIONS,
  });
  const otherClient = makeLeaf(dir, "other-client", {
    ca: "other-ca",
    commonName: "tsercom-other-client",
    extensions: CLIENT_EXTENSIONS,
  });
  const client = await makeLeaf(dir, "client", {
    ca: "ca",
    commonName: CLIENT_COMMON_NAME,
    extensions: CLIENT_EXTENSIONS,
  });
  const expiredServer = await makeLeaf(dir, "expired-server", {
    ca: "ca",
    commonName: "localhost",
    extensions: SERVER_EXTENSIONS,
    dates: { start: "20200101000000Z", end: "20200102000000Z" },
  });
  return { ca, server, client, otherCa, otherClient: await otherClient, expiredServer };
}
