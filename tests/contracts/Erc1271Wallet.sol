// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title Erc1271Wallet
/// @notice A contract account for the tests of `ModelRegistry.registerBySig`: through ERC-1271 it
/// accepts a signature its owner's key made over the hash and answers "no" to any other. Its
/// `mode` makes it misbehave instead, so that the registry's answer to each behaviour is checked.
contract Erc1271Wallet {
    bytes4 internal constant MAGIC = 0x1626ba7e;

    /// 0: check the owner's signature; 1: revert; 2: write storage, then accept (which only a
    /// caller that does not use staticcall would see); 3: accept anything, in 31 bytes.
    uint8 public mode;
    uint256 public writes;
    address public immutable owner;

    constructor(address owner_) {
        owner = owner_;
    }

    function setMode(uint8 mode_) external {
        mode = mode_;
    }

    function isValidSignature(bytes32 hash, bytes calldata signature) external returns (bytes4) {
        if (mode == 1) revert("refused");
        if (mode == 2) {
            writes += 1;
            return MAGIC;
        }
        if (mode == 3) {
            assembly {
                mstore(0, 0x1626ba7e00000000000000000000000000000000000000000000000000000000)
                return(0, 31)
            }
        }
        if (signature.length != 65) return 0xffffffff;
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        return ecrecover(hash, v, r, s) == owner ? MAGIC : bytes4(0xffffffff);
    }

    /// Call `target` as this account: how the wallet cancels its own nonce at the registry.
    function execute(address target, bytes calldata data) external {
        require(msg.sender == owner, "not the owner");
        (bool ok, bytes memory answer) = target.call(data);
        if (!ok) {
            assembly {
                revert(add(answer, 32), mload(answer))
            }
        }
    }
}
