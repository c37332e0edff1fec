/**
 * The storefront: sign in (cookie session), browse products, fill a cart, place the order, and
 * watch its status change live. State lives here; each render function redraws one section.
 */
import type { ApolloClient } from '@apollo/client';
import { Cart, Checkout } from './cart.ts';
import { formatMoney, productPage, type Product } from './catalog.ts';
import { byId, el, field } from './dom.ts';
import { createGatewayClient, problemOf } from './gateway.ts';
import { followOrder, placeOrder, settledStatuses, type OrderState } from './orders.ts';
import { currentCustomer, signIn, signOut, type Customer } from './session.ts';

const client: ApolloClient = createGatewayClient();
const cart = new Cart();
let customer: Customer | null = null;
let checkout: Checkout | null = null;
let stopFollowing: (() => void) | null = null;
let nextCursor: string | null = null;

function say(text: string, kind: 'info' | 'error' = 'info'): void {
  const message = byId('message');
  message.textContent = text;
  message.dataset.kind = kind;
}

function sayProblem(what: string, error: unknown): void {
  const problem = problemOf(error);
  say(`${what}: ${problem.message} (${problem.code})`, 'error');
}

function renderSession(): void {
  const section = byId('session');
  section.replaceChildren();
  if (customer) {
    const button = el('button', { type: 'button', id: 'sign-out' }, 'Sign out');
    button.addEventListener('click', () => void onSignOut());
    section.append(el('span', { id: 'signed-in' }, `Signed in as ${customer.name}`), button);
    return;
  }
  const form = el(
    'form',
    { id: 'sign-in' },
    el('label', {}, 'Email ', el('input', { name: 'email', type: 'email', autocomplete: 'username', required: true })),
    el('label', {}, 'Password ', el('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
    el('button', { type: 'submit' }, 'Sign in'),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void onSignIn(field(form, 'email'), field(form, 'password'));
  });
  section.append(form);
}

function renderProducts(products: Product[], append: boolean): void {
  const list = byId('products');
  if (!append) list.replaceChildren();
  for (const product of products) {
    const add = el('button', { type: 'button', 'data-product-id': product.id }, 'Add to cart');
    add.addEventListener('click', () => {
      if (!cart.add(product)) say('That line or the cart is full', 'error');
      renderCart();
    });
    list.append(
      el('li', { class: 'product' }, el('h3', {}, product.name), el('p', { class: 'description' }, product.description), el('p', { class: 'price' }, formatMoney(product.price, product.currency)), add),
    );
  }
  document.getElementById('more-products')?.remove();
  if (nextCursor) {
    const more = el('button', { type: 'button', id: 'more-products' }, 'More products');
    more.addEventListener('click', () => void loadProducts(true));
    list.after(more);
  }
}

function renderCart(): void {
  const section = byId('cart-lines');
  section.replaceChildren();
  if (cart.isEmpty) {
    section.append(el('p', {}, 'Your cart is empty.'));
    return;
  }
  const lines = el('ul', { id: 'cart-list' });
  for (const line of cart.lines) {
    const remove = el('button', { type: 'button', 'aria-label': `Remove ${line.product.name}` }, '×');
    remove.addEventListener('click', () => {
      cart.remove(line.product.id);
      renderCart();
    });
    lines.append(el('li', {}, `${line.quantity} × ${line.product.name} `, remove));
  }
  const total = cart.total();
  const form = el(
    'form',
    { id: 'checkout' },
    el('fieldset', {}, el('legend', {}, 'Shipping address'),
      el('label', {}, 'Name ', el('input', { name: 'name', required: true, value: customer?.name ?? '' })),
      el('label', {}, 'Street ', el('input', { name: 'line1', required: true })),
      el('label', {}, 'City ', el('input', { name: 'city', required: true })),
      el('label', {}, 'Postal code ', el('input', { name: 'postalCode', required: true })),
      el('label', {}, 'Country ', el('input', { name: 'country', required: true, value: 'DE', maxlength: '2', pattern: '[A-Za-z]{2}' })),
    ),
    el('label', {}, 'Payment ',
      el('select', { name: 'paymentToken' }, el('option', { value: 'tok_visa' }, 'Visa (test card)'), el('option', { value: 'tok_declined' }, 'A card that is declined (test)')),
    ),
    el('button', { type: 'submit', disabled: !customer }, customer ? 'Place order' : 'Sign in to order'),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void onPlaceOrder(form);
  });
  section.append(lines, el('p', { id: 'cart-total' }, total ? `Total ${formatMoney(total.amount, total.currency)}` : ''), form);
}

function renderOrder(order: OrderState, history: string[]): void {
  byId('order').hidden = false;
  byId('order-view').replaceChildren(
    el('p', {}, 'Order ', el('code', { id: 'order-id' }, order.id)),
    el('p', {}, 'Status ', el('strong', { id: 'order-status', 'data-status': order.status }, order.status), order.reason ? ` (${order.reason})` : ''),
    el('p', {}, `Total ${formatMoney(order.total, order.currency)}`),
    el('ol', { id: 'order-history' }, ...history.map((status) => el('li', {}, status))),
  );
}

async function loadProducts(append: boolean): Promise<void> {
  try {
    const page = await productPage(client, append ? nextCursor : null);
    nextCursor = page.nextCursor;
    renderProducts(page.products, append);
  } catch (error) {
    sayProblem('Could not load products', error);
  }
}

async function onSignIn(email: string, password: string): Promise<void> {
  try {
    customer = await signIn(client, email, password);
    say(`Welcome, ${customer.name}`);
  } catch (error) {
    sayProblem('Could not sign in', error);
  }
  renderSession();
  renderCart();
}

async function onSignOut(): Promise<void> {
  try {
    await signOut(client);
  } catch (error) {
    sayProblem('Could not sign out', error);
  }
  customer = null;
  stopFollowing?.();
  renderSession();
  renderCart();
}

async function onPlaceOrder(form: HTMLFormElement): Promise<void> {
  const submit = form.querySelector('button[type=submit]') as HTMLButtonElement;
  submit.disabled = true;
  checkout ??= new Checkout();
  try {
    const order = await placeOrder(client, checkout, {
      lines: cart.lines,
      shippingAddress: {
        name: field(form, 'name'),
        line1: field(form, 'line1'),
        city: field(form, 'city'),
        postalCode: field(form, 'postalCode'),
        country: field(form, 'country').toUpperCase(),
      },
      paymentToken: field(form, 'paymentToken'),
    });
    checkout = null;
    cart.clear();
    renderCart();
    say('Order placed: its status follows live below.');
    const history: string[] = [order.status];
    renderOrder(order, history);
    stopFollowing?.();
    stopFollowing = followOrder(
      client,
      order.id,
      (update) => {
        if (history.at(-1) !== update.status) history.push(update.status);
        renderOrder(update, history);
        if (settledStatuses.has(update.status)) stopFollowing?.();
      },
      (error) => sayProblem('Live status stopped', error),
    );
  } catch (error) {
    submit.disabled = false;
    sayProblem('Could not place the order', error);
  }
}

async function start(): Promise<void> {
  renderSession();
  renderCart();
  try {
    customer = await currentCustomer(client);
  } catch (error) {
    sayProblem('Could not reach the shop', error);
  }
  renderSession();
  renderCart();
  await loadProducts(false);
}

void start();
