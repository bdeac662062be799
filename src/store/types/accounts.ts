/**
 * Store part: accounts and their API keys.
 * Invariant: API keys are stored as hashes only; the store never sees a plaintext key.
 */

export interface Account {
  readonly id: number;
  readonly name: string;
  readonly createdAt: number;
}

export interface NewApiKey {
  readonly accountId: number;
  readonly name: string;
  /** Hex SHA-256 of the full key. */
  readonly hash: string;
  /** The first characters of the key, shown in listings so an operator can tell keys apart. */
  readonly prefix: string;
  /** What the key may do (src/auth/scopes.ts); default ["mail.send"]. */
  readonly scopes?: readonly string[];
}

export interface ApiKey {
  readonly id: number;
  readonly accountId: number;
  readonly accountName: string;
  readonly name: string;
  readonly prefix: string;
  readonly createdAt: number;
  readonly lastUsedAt: number | null;
  readonly revokedAt: number | null;
  /** What the key may do: mail.send, messages.read, …, admin (every scope). */
  readonly scopes: readonly string[];
}

export interface AccountStore {
  createAccount(name: string): Promise<Account>;
  getAccount(name: string): Promise<Account | undefined>;
  listAccounts(): Promise<Account[]>;

  insertApiKey(key: NewApiKey): Promise<ApiKey>;
  /** A key that exists and is not revoked, by the hash of its plaintext. */
  findActiveApiKey(hash: string): Promise<ApiKey | undefined>;
  listApiKeys(): Promise<ApiKey[]>;
  /** Returns false when no active key has that name. */
  revokeApiKey(name: string): Promise<boolean>;
  recordApiKeyUse(uses: ReadonlyArray<{ readonly id: number; readonly at: number }>): Promise<void>;
}
