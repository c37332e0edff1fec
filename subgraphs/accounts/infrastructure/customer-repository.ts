/** Customers and their addresses in the accounts database. */
import DataLoader from 'dataloader';
import { conflictError, notFoundError } from '../../../platform/errors/domain-error.ts';
import { unauthenticated } from '../../../platform/errors/index.ts';
import { isUuid, newId } from '../../../platform/ids.ts';
import type { Role } from '../../../platform/identity/identity.ts';
import type { AddressDraft } from '../domain/address.ts';
import { maxAddressesPerCustomer } from '../domain/address.ts';
import type { AccountsDatabase, AccountsTransaction } from './database.ts';

export interface CustomerRecord {
  id: string;
  email: string;
  name: string;
  passwordHash: string;
  roles: Role[];
  createdAt: Date;
}

export interface AddressRecord extends AddressDraft {
  id: string;
  customerId: string;
}

export class CustomerRepository {
  constructor(private readonly db: AccountsDatabase) {}

  /**
   * Creates the customer unless the email is taken, in one statement either way (INSERT … ON
   * CONFLICT DO NOTHING): sign-up answers alike in both cases (use-cases/sign-up.ts), and of two
   * simultaneous sign-ups with one email exactly one row is written. True when it was created.
   */
  async createUnlessTaken(customer: { email: string; name: string; passwordHash: string; roles?: Role[] }): Promise<boolean> {
    const { count } = await this.db.customer.createMany({
      data: [{ id: newId(), email: customer.email, name: customer.name, passwordHash: customer.passwordHash, roles: customer.roles ?? ['customer'] }],
      skipDuplicates: true,
    });
    return count === 1;
  }

  findById(id: string): Promise<CustomerRecord | null> {
    return isUuid(id) ? this.db.customer.findUnique({ where: { id } }) : Promise.resolve(null);
  }

  async setPasswordHash(customerId: string, passwordHash: string, db: AccountsDatabase | AccountsTransaction = this.db): Promise<void> {
    await db.customer.update({ where: { id: customerId }, data: { passwordHash } });
  }

  findByEmail(email: string): Promise<CustomerRecord | null> {
    return this.db.customer.findUnique({ where: { email } });
  }

  /** One statement for any number of ids: the loader behind `Customer` entity references. */
  createLoader(): DataLoader<string, CustomerRecord | null> {
    return new DataLoader(async (ids) => {
      const wanted = ids.filter(isUuid);
      const rows = wanted.length === 0 ? [] : await this.db.customer.findMany({ where: { id: { in: wanted } } });
      const byId = new Map(rows.map((row) => [row.id, row]));
      return ids.map((id) => byId.get(id) ?? null);
    });
  }

  /** One statement for the addresses of any number of customers. */
  createAddressLoader(): DataLoader<string, AddressRecord[]> {
    return new DataLoader(async (customerIds) => {
      const rows = await this.db.address.findMany({
        where: { customerId: { in: [...customerIds] } },
        orderBy: [{ isDefault: 'desc' }, { createdAt: 'asc' }],
      });
      return customerIds.map((id) => rows.filter((row) => row.customerId === id));
    });
  }

  /** Adds an address; a new default address takes the flag from the previous one, atomically. */
  addAddress(customerId: string, draft: AddressDraft): Promise<AddressRecord> {
    return this.db.$transaction(async (tx) => {
      // Serialises concurrent additions of one customer so the limit and the default flag hold.
      const owner = await tx.$queryRaw<{ id: string }[]>`SELECT id FROM customers WHERE id = ${customerId}::uuid FOR UPDATE`;
      // A token outlives the account it was issued for when the account is deleted.
      if (owner.length === 0) throw unauthenticated('Your account no longer exists: sign in again');
      const count = await tx.address.count({ where: { customerId } });
      if (count >= maxAddressesPerCustomer) throw conflictError(`An address book holds at most ${maxAddressesPerCustomer} addresses`);
      const isDefault = draft.isDefault || count === 0;
      if (isDefault) await tx.address.updateMany({ where: { customerId, isDefault: true }, data: { isDefault: false } });
      return tx.address.create({ data: { ...draft, isDefault, id: newId(), customerId } });
    });
  }

  async removeAddress(customerId: string, addressId: string): Promise<void> {
    const { count } = isUuid(addressId) ? await this.db.address.deleteMany({ where: { id: addressId, customerId } }) : { count: 0 };
    if (count === 0) throw notFoundError('No such address in your address book');
  }
}
